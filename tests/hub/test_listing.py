"""Listing and likes with the real `huggingface_hub` client (issue 15, item 6): list_spaces' sort, filter, search
and limit (past 1000, by the Link pages the client follows), unlike, list_liked_repos, list_repo_likers."""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy
from huggingface_hub import HfApi
from sqlalchemy.orm import Session

from controlplane.models import Space

pytestmark = pytest.mark.docker


def hub(platform, user: str | None) -> HfApi:
    return HfApi(endpoint=platform.url, token=platform.user(user) if user else False)


def like(platform, user: str, space: str) -> None:
    # The client has `unlike` but no `like` (the Hub likes from its pages): the same call the Hub's pages make.
    with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.user(user)}"}) as client:
        assert client.post(f"/api/spaces/{space}/like").status_code == 200


def ids(spaces) -> list[str]:
    return [s.id for s in spaces]


def test_list_spaces_sorts_filters_searches_and_counts_likes(platform):
    api, anon = hub(platform, "lister"), hub(platform, None)
    for name, sdk in (("alpha", "static"), ("beta", "gradio"), ("gamma", "static")):
        api.create_repo(f"lister/{name}", repo_type="space", space_sdk=sdk)
    api.create_repo("lister/hidden", repo_type="space", space_sdk="gradio", private=True)
    for user, name in (("fan1", "alpha"), ("fan2", "alpha"), ("fan1", "gamma"), ("lister", "hidden")):
        like(platform, user, f"lister/{name}")

    by_likes = list(anon.list_spaces(author="lister", sort="likes"))
    assert [(s.id, s.likes) for s in by_likes] == [("lister/alpha", 2), ("lister/gamma", 1), ("lister/beta", 0)]
    assert ids(anon.list_spaces(author="lister", sort="created_at")) == ["lister/gamma", "lister/beta", "lister/alpha"]
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id="lister/beta", repo_type="space")
    # lastModified sorts by the date of main's last commit, stored for the listing once the commit has changed the
    # Space's row (its build starts about a second after it).
    deadline = time.monotonic() + 30
    while ids(anon.list_spaces(author="lister", sort="last_modified"))[0] != "lister/beta":
        assert time.monotonic() < deadline, ids(anon.list_spaces(author="lister", sort="last_modified"))
        time.sleep(0.3)
    # The owner sees their private Space (and its like); nobody else does.
    # Equal likes: the newer Space first.
    assert ids(api.list_spaces(author="lister", sort="likes"))[:3] == ["lister/alpha", "lister/hidden", "lister/gamma"]

    assert ids(anon.list_spaces(author="lister", filter="gradio")) == ["lister/beta"]
    assert ids(anon.list_spaces(author="lister", filter=["static"], sort="created_at")) == [
        "lister/gamma",
        "lister/alpha",
    ]
    assert ids(anon.list_spaces(search="lister/al")) == ["lister/alpha"]
    assert ids(anon.list_spaces(search="ISTER/GAM")) == ["lister/gamma"]
    assert ids(anon.list_spaces(search="lister/hid")) == []
    assert anon.space_info("lister/alpha").likes == 2

    assert sorted(hub(platform, "fan1").list_liked_repos().spaces) == ["lister/alpha", "lister/gamma"]
    assert anon.list_liked_repos("lister").spaces == []  # the like of a private Space is not disclosed
    assert api.list_liked_repos("lister").spaces == ["lister/hidden"]
    assert sorted(u.username for u in anon.list_repo_likers("lister/alpha", repo_type="space")) == ["fan1", "fan2"]

    hub(platform, "fan2").unlike("lister/alpha", repo_type="space")
    assert anon.space_info("lister/alpha").likes == 1
    assert hub(platform, "fan2").list_liked_repos().spaces == []


def test_list_spaces_reads_past_1000_by_pages(platform):
    # 1,100 Spaces written straight into the database: the listing reads only rows, and creating them through the
    # API (a git repo and a commit each) would take minutes. They are removed afterwards.
    engine = sqlalchemy.create_engine(f"sqlite:///{platform.data_dir / 'spaceyard.db'}")
    with Session(engine) as s:
        s.add_all(Space(owner="crowd", name=f"s{i:04d}", sdk="static", card_data={}) for i in range(1100))
        s.commit()
    try:
        anon = hub(platform, None)
        got = ids(anon.list_spaces(author="crowd", limit=1050))
        assert len(got) == 1050 == len(set(got)) and got[:2] == ["crowd/s0000", "crowd/s0001"]
        assert len(ids(anon.list_spaces(author="crowd"))) == 1100  # no limit: every page
        with httpx.Client(base_url=platform.url) as client:
            first = client.get("/api/spaces", params={"author": "crowd", "limit": 1050})
            assert len(first.json()) == 1000 and 'rel="next"' in first.headers["link"]
            last = client.get(first.links["next"]["url"])
            assert len(last.json()) == 100 and "link" not in last.headers
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.delete(Space).where(Space.owner == "crowd"))
