"""Push there, live here: a Space linked to a repository on the tests' forge (real git over smart HTTP) deploys
what each forge's signed push webhook names, on a real platform (builder, Docker). Bad deliveries change
nothing and get a clear answer."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.webhooks.conftest import MAX_BODY
from tests.webhooks.forge import EVENT, PUSH, deliver, github_ping, signed_headers, static_files
from tests.webhooks.spaces import build_log, deliveries, link, linked_serving, wait_delivery, wait_serving

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea", "forgejo"])
def test_push_builds_and_deploys_the_pushed_commit(linked_platform, forge, provider):
    owner, name = "hooks", f"push-{provider}"
    space = f"{owner}/{name}"
    up = forge.create(name, static_files("version one"))
    linked = link(linked_platform, owner, name, up)
    secret = linked["webhookSecret"]
    assert linked["sync"]["result"] == "building", linked
    assert linked["webhooks"][provider].endswith(f"/api/webhooks/{provider}/{space}")
    wait_serving(linked_platform, space, "version one")

    before, after = up.commit(static_files("version two"), "second")
    payload = PUSH[provider](up, "main", before, after, "second")
    delivery = str(uuid.uuid4())
    resp = deliver(linked_platform.url, provider, space, payload, secret, delivery=delivery)
    assert resp.status_code == 202, resp.text
    assert resp.json()["result"] == "accepted" and resp.json()["commit"] == after

    wait_serving(linked_platform, space, "version two")
    with linked_platform.api(owner) as api:
        assert api.get(f"/api/spaces/{space}").json()["sha"] == after
    row = wait_delivery(linked_platform, owner, space, delivery)
    assert row["result"] == "building" and row["commit"] == after and row["provider"] == provider
    assert row["event"] == EVENT[provider] and row["build"] is not None and row["time"]


def test_bad_deliveries_change_nothing(linked_platform, forge):
    owner = "hooks"
    space, up, secret = linked_serving(linked_platform, forge, owner, "bad-input", "steady")
    before, after = up.commit(static_files("never deployed"), "unsigned")
    payload = PUSH["github"](up, "main", before, after, "unsigned")
    body = json.dumps(payload).encode()
    url = f"{linked_platform.url}/api/webhooks/github/{space}"
    good = signed_headers("github", body, secret, "push", str(uuid.uuid4()))

    # No signature, a wrong one, one made with another secret, one over other bytes, a non-ASCII one: 401.
    over_other_bytes = signed_headers("github", body + b" ", secret, "push", "x")["X-Hub-Signature-256"]
    for headers in (
        {k: v for k, v in good.items() if k != "X-Hub-Signature-256"},
        good | {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        signed_headers("github", body, "not-the-secret", "push", str(uuid.uuid4())),
        good | {"X-Hub-Signature-256": over_other_bytes},
        good | {"X-Hub-Signature-256": b"sha256=\xe9"},
    ):
        resp = httpx.post(url, content=body, headers=headers)
        assert resp.status_code == 401, resp.text
        assert "signature" in resp.json()["error"].lower()
    # The signature covers the exact bytes: the same JSON re-serialised is not the signed body.
    resp = httpx.post(url, content=json.dumps(payload, indent=1).encode(), headers=good)
    assert resp.status_code == 401
    # GitLab's token and Gitea's signature are checked the same way.
    for provider in ("gitlab", "gitea", "forgejo"):
        headers = signed_headers(provider, body, "wrong", EVENT[provider], str(uuid.uuid4()))
        resp = httpx.post(f"{linked_platform.url}/api/webhooks/{provider}/{space}", content=body, headers=headers)
        assert resp.status_code == 401, (provider, resp.text)

    # Unknown Space, a Space that is not linked, an unknown forge: 404.
    resp = httpx.post(f"{linked_platform.url}/api/webhooks/github/{owner}/no-such-space", content=body, headers=good)
    assert resp.status_code == 404 and "not a Space linked" in resp.json()["error"]
    with linked_platform.api(owner) as api:
        api.post("/api/repos/create", json={"type": "space", "name": "unlinked", "organization": owner,
                                            "sdk": "static"}).raise_for_status()
    resp = httpx.post(f"{linked_platform.url}/api/webhooks/github/{owner}/unlinked", content=body, headers=good)
    assert resp.status_code == 404
    resp = httpx.post(f"{linked_platform.url}/api/webhooks/bitbucket/{space}", content=body, headers=good)
    assert resp.status_code == 404 and "provider" in resp.json()["error"]

    # Too large: refused by its declared length, and a chunked body (no length) once it passes the limit.
    big = b"{" + b" " * MAX_BODY + b"}"
    resp = httpx.post(url, content=big, headers=signed_headers("github", big, secret, "push", "big"))
    assert resp.status_code == 413 and str(MAX_BODY) in resp.json()["error"]
    resp = httpx.post(url, content=iter([big[:40000], big[40000:]]),
                      headers=signed_headers("github", big, secret, "push", "big2"))
    assert resp.status_code == 413

    # Signed but not JSON, or JSON but not an object, or a push without a commit id: 400.
    for bad in (b"{not json", b"[1, 2]", json.dumps({"ref": "refs/heads/main", "after": "HEAD"}).encode()):
        resp = httpx.post(url, content=bad, headers=signed_headers("github", bad, secret, "push", str(uuid.uuid4())))
        assert resp.status_code == 400, resp.text
        assert "alformed" in resp.json()["error"]

    # Nothing of that was recorded or deployed.
    assert deliveries(linked_platform, owner, space) == []
    with linked_platform.api(owner) as api:
        assert api.get(f"/api/spaces/{space}").json()["sha"] != after
    assert "steady" in httpx.get(f"{linked_platform.url}/apps/{space}/").text


def test_replay_other_branch_ping_and_redeliver(linked_platform, forge):
    owner = "hooks"
    space, up, secret = linked_serving(linked_platform, forge, owner, "replays", "first")

    resp = deliver(linked_platform.url, "github", space, github_ping(up), secret, event="ping")
    assert resp.status_code == 200 and resp.json()["result"] == "ignored" and "ping" in resp.json()["detail"]

    # A push to another branch is acknowledged and ignored, with the reason.
    before, after = up.commit(static_files("feature work"), "feature", branch="feature")
    resp = deliver(linked_platform.url, "gitea", space, PUSH["gitea"](up, "feature", before, after, "f"), secret)
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == "ignored" and "refs/heads/feature" in resp.json()["detail"]

    # The same delivery twice: built once, the replay answered "duplicate".
    before, after = up.commit(static_files("second"), "second")
    payload, delivery = PUSH["github"](up, "main", before, after, "second"), str(uuid.uuid4())
    assert deliver(linked_platform.url, "github", space, payload, secret, delivery=delivery).status_code == 202
    replay = deliver(linked_platform.url, "github", space, payload, secret, delivery=delivery)
    assert replay.status_code == 200 and replay.json()["result"] == "duplicate"
    wait_serving(linked_platform, space, "second")
    rows = deliveries(linked_platform, owner, space)
    assert [r["deliveryId"] for r in rows].count(delivery) == 1
    assert [r["result"] for r in rows if r["event"] == "ping"] == ["ignored"]

    # Redeliver re-processes the stored payload: a new delivery, a new build of the same commit.
    original = next(r for r in rows if r["deliveryId"] == delivery)
    with linked_platform.api(owner) as api:
        resp = api.post(f"/api/spaces/{space}/webhooks/deliveries/{original['id']}/redeliver")
        assert resp.status_code == 202, resp.text
        again = resp.json()
        assert again["commit"] == after and delivery in again["detail"]
        row = wait_delivery(linked_platform, owner, space, again["deliveryId"])
        assert row["result"] == "building" and row["build"] > original["build"]
        # Not the owner: the log and redeliver are not theirs.
        with linked_platform.api("stranger") as other:
            assert other.get(f"/api/spaces/{space}/webhooks/deliveries").status_code == 403
            assert other.post(f"/api/spaces/{space}/webhooks/deliveries/{original['id']}/redeliver").status_code == 403
    wait_serving(linked_platform, space, "second")


def test_unfetchable_commit_is_a_build_error(linked_platform, forge):
    owner = "hooks"
    space, up, secret = linked_serving(linked_platform, forge, owner, "unfetchable", "fine")
    # A commit the repository does not have, and then the repository gone: both end as failed builds that say
    # which URL and what git answered.
    ghost = "1" * 40
    resp = deliver(linked_platform.url, "github", space, PUSH["github"](up, "main", ghost, ghost, "x"), secret)
    assert resp.status_code == 202
    row = wait_delivery(linked_platform, owner, space, resp.json()["deliveryId"])
    assert row["result"] == "fetch failed" and up.url in row["detail"] and ghost in row["detail"]

    (forge.root / "unfetchable.git").rename(forge.root / "moved.git")
    before, after = "0" * 40, "2" * 40
    resp = deliver(linked_platform.url, "gitlab", space, PUSH["gitlab"](up, "main", before, after, "x"), secret)
    row = wait_delivery(linked_platform, owner, space, resp.json()["deliveryId"])
    assert row["result"] == "fetch failed" and up.url in row["detail"] and "not found" in row["detail"], row
    assert up.url in build_log(linked_platform, owner, space)
    # The app that ran keeps running and says its last build failed, as after any failed build.
    runtime = linked_platform.wait_stage(space, {"RUNNING"})
    assert "build failed" in runtime["errorMessage"] and up.url in runtime["errorMessage"]
    assert "fine" in httpx.get(f"{linked_platform.url}/apps/{space}/").text


def test_first_sync_failure_is_build_error(linked_platform, forge):
    owner, name = "hooks", "never-fetched"
    space = f"{owner}/{name}"
    up = forge.create(name, static_files("x"))
    (forge.root / f"{name}.git").rename(forge.root / "gone.git")
    linked = link(linked_platform, owner, name, up)
    assert linked["sync"]["result"] == "fetch failed" and up.url in linked["sync"]["detail"]
    runtime = linked_platform.wait_stage(space, {"BUILD_ERROR"})
    assert up.url in runtime["errorMessage"] and "not found" in runtime["errorMessage"]


def test_only_the_last_deliveries_are_kept(linked_platform, forge):
    owner, name = "hooks", "kept"
    space = f"{owner}/{name}"
    up = forge.create(name, static_files("k"))
    secret = link(linked_platform, owner, name, up)["webhookSecret"]
    sent = [str(uuid.uuid4()) for _ in range(9)]
    for delivery in sent:
        resp = deliver(linked_platform.url, "github", space, github_ping(up), secret, event="ping", delivery=delivery)
        assert resp.status_code == 200, resp.text
    # SPACEYARD_WEBHOOK_DELIVERIES_KEPT=6 on this platform: the newest six, newest first.
    assert [d["deliveryId"] for d in deliveries(linked_platform, owner, space)] == sent[::-1][:6]


def test_github_form_encoded_delivery(linked_platform, forge):
    """GitHub's other content type: payload=<url-encoded JSON>, signed over the form body as sent."""
    from urllib.parse import urlencode

    owner = "hooks"
    space, up, secret = linked_serving(linked_platform, forge, owner, "form", "form one")
    before, after = up.commit(static_files("form two"), "two")
    body = urlencode({"payload": json.dumps(PUSH["github"](up, "main", before, after, "two"))}).encode()
    headers = signed_headers("github", body, secret, "push", str(uuid.uuid4()))
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    resp = httpx.post(f"{linked_platform.url}/api/webhooks/github/{space}", content=body, headers=headers)
    assert resp.status_code == 202 and resp.json()["commit"] == after, resp.text
    wait_serving(linked_platform, space, "form two")


def test_an_older_push_delivered_late_does_not_take_the_space_back(linked_platform, forge):
    """Forges do not promise order: the delivery of an earlier push may arrive after a later one's."""
    owner = "hooks"
    space, up, secret = linked_serving(linked_platform, forge, owner, "late", "first")
    before, second = up.commit(static_files("second"), "second")
    _, third = up.commit(static_files("third"), "third")

    newer = str(uuid.uuid4())
    payload = PUSH["github"](up, "main", second, third, "third")
    assert deliver(linked_platform.url, "github", space, payload, secret, delivery=newer).status_code == 202
    assert wait_delivery(linked_platform, owner, space, newer)["result"] == "building"
    wait_serving(linked_platform, space, "third")

    late = str(uuid.uuid4())
    payload = PUSH["github"](up, "main", before, second, "second")
    assert deliver(linked_platform.url, "github", space, payload, secret, delivery=late).status_code == 202
    row = wait_delivery(linked_platform, owner, space, late)
    assert row["result"] == "ignored" and "older than the Space's current commit" in row["detail"], row
    assert row["build"] is None
    with linked_platform.api(owner) as api:
        assert api.get(f"/api/spaces/{space}").json()["sha"] == third
    wait_serving(linked_platform, space, "third")


def test_a_private_linked_space_is_no_space_to_an_unsigned_caller(linked_platform, forge):
    """An attacker probing webhook URLs learns nothing of private Spaces: a bad signature gets the same 404 as a
    name that does not exist; the forge's own signed delivery still works."""
    owner, name = "hooks", "hidden"
    space = f"{owner}/{name}"
    up = forge.create(name, static_files("private one"))
    secret = link(linked_platform, owner, name, up)["webhookSecret"]
    with linked_platform.api(owner) as api:
        resp = api.put(f"/api/spaces/{space}/settings", json={"private": True})
        assert resp.status_code == 200, resp.text
    before, after = up.commit(static_files("private two"), "second")
    body = json.dumps(PUSH["github"](up, "main", before, after, "second")).encode()
    missing = httpx.post(f"{linked_platform.url}/api/webhooks/github/{owner}/no-such-space", content=body,
                         headers=signed_headers("github", body, "guess", "push", str(uuid.uuid4())))
    probe = httpx.post(f"{linked_platform.url}/api/webhooks/github/{space}", content=body,
                       headers=signed_headers("github", body, "guess", "push", str(uuid.uuid4())))
    assert probe.status_code == missing.status_code == 404
    assert probe.json()["error"].replace(name, "X") == missing.json()["error"].replace("no-such-space", "X")
    signed = httpx.post(f"{linked_platform.url}/api/webhooks/github/{space}", content=body,
                        headers=signed_headers("github", body, secret, "push", str(uuid.uuid4())))
    assert signed.status_code == 202 and signed.json()["commit"] == after, signed.text
