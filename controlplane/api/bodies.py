"""Request bodies of the JSON API, in the Hub's field names (the aliases; the Python names work too).

The models check types, so a malformed body is a 400 naming the field (api/errors.py renders it) instead of a
500 from deep in a route; the rules on values (names, keys, visibility words) stay in the domain modules, with
their own messages. Unknown fields are ignored: the Hub clients send more than Spaceyard uses (`template`,
`resourceGroupId`, `volumes`, ...).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

Scalar = str | int | float | bool  # a secret's or variable's value: stored as its text


class HubBody(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def fields(self) -> dict[str, Any]:
        """The fields the caller sent, by their Hub names: what the domain's dict-taking helpers read."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class Item(HubBody):
    """One secret or variable: `add_space_secret`, `add_space_variable`, or an item of `secrets`/`variables`."""

    key: str = Field(min_length=1)
    value: Scalar
    description: str | None = None


class Key(HubBody):
    """`delete_space_secret`, `delete_space_variable`."""

    key: str = Field(min_length=1)


class Visibility(HubBody):
    """2.x clients send `visibility`, 0.x `private` (a strict boolean: "yes" is not true)."""

    visibility: str | None = None
    private: bool | None = None

    @field_validator("private", mode="before")
    @classmethod
    def _strict_private(cls, value: object) -> object:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f'"private" must be true or false, not {value!r}')
        return value


class NewSpace(Visibility):
    """What create and duplicate share: the copy's hardware, sleep time, secrets and variables."""

    hardware: str | None = None
    sleep_time_seconds: int | None = None
    secrets: list[Item] | None = None
    variables: list[Item] | None = None


class CreateRepo(NewSpace):
    """`HfApi.create_repo`: `name` may be "owner/name"; `organization` is the other way to name the owner."""

    name: str = Field(min_length=1)
    organization: str | None = None
    type: str = "model"
    sdk: str | None = None


class RepoRef(HubBody):
    """`HfApi.delete_repo`."""

    name: str = Field(min_length=1)
    organization: str | None = None
    type: str = "model"


class MoveRepo(HubBody):
    """`HfApi.move_repo`."""

    from_repo: str
    to_repo: str
    type: str = "model"


class Duplicate(NewSpace):
    """`HfApi.duplicate_repo`: `repository` is "owner/name" of the copy."""

    repository: str = Field(min_length=1)


class SpaceSettings(Visibility):
    """`HfApi.update_repo_settings`; other settings are kept (extra="allow") only to be refused by name."""

    model_config = ConfigDict(extra="allow")

    gated: bool | str | None = None
    xet_enabled: bool | None = None


class Hardware(HubBody):
    """`HfApi.request_space_hardware`."""

    flavor: str | None = None
    sleep_time_seconds: int | None = None


class SleepTime(HubBody):
    """`HfApi.set_space_sleep_time`: seconds, or -1/null for never."""

    seconds: int | None = None


class NewBranch(HubBody):
    """`HfApi.create_branch`: `startingPoint` is a branch, tag or commit (default: main)."""

    starting_point: str | None = None


class NewTag(HubBody):
    """`HfApi.create_tag`."""

    tag: str = Field(min_length=1)
    message: str | None = None


class ValidateYaml(HubBody):
    """`HfApi._validate_yaml`, before a commit that changes README.md."""

    content: str | None = None
    repo_type: str | None = None


class PreuploadFile(HubBody):
    path: str = Field(min_length=1)
    size: int = Field(default=0, ge=0)
    sample: str | None = None


class Preupload(HubBody):
    """The preupload call of `create_commit`: one entry per file to add."""

    files: list[PreuploadFile]


class Rollback(HubBody):
    """`POST .../rollback`: the build to serve again (default: the one before the build that serves)."""

    build: int | None = Field(default=None, strict=True)  # an id: true and "5" are not builds


class SpendingLimit(HubBody):
    """A number in the catalog's currency per month, or null for no limit."""

    limit: Annotated[int | float, Field(ge=0)] | None = None


class Link(HubBody):
    """`PUT .../link` (docs/webhooks.md): Spaceyard's own call, in snake_case as documented there."""

    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="ignore")

    url: str
    branch: str = "main"
    credential: str | None = None  # absent: the stored one stays; null or "": removed
    webhook_secret: str | None = None
    new_webhook_secret: bool = False
