"""Real Gradio and Streamlit apps behind the router, started with the env from root_path_env."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.timeout(180)


def test_gradio_client_path_based(router: str, sdk_apps) -> None:
    from gradio_client import Client

    client = Client(f"{router}/apps/gr/hello/", verbose=False)
    assert client.predict("World", api_name="/greet") == "Hello World!"
    # A generator runs through the queue and streams its outputs back over SSE.
    job = client.submit(3, api_name="/count")
    assert job.result(timeout=30) == "2"
    assert job.outputs() == ["0", "1", "2"]


def test_gradio_client_host_based(host_of, sdk_apps, resolve_apps_domain) -> None:
    from gradio_client import Client

    client = Client(f"http://{host_of('gr-hello')}/", verbose=False)
    assert client.predict("World", api_name="/greet") == "Hello World!"
    assert client.submit(2, api_name="/count").result(timeout=30) == "1"


@pytest.mark.parametrize("host_based", [False, True])
def test_gradio_page_links_to_the_url_it_was_opened_at(router: str, host_of, sdk_apps, host_based: bool) -> None:
    """Gradio writes its root URL into the page; the browser then calls everything under it."""
    headers = {"Host": host_of("gr-hello")} if host_based else {}
    base = router if not host_based else f"http://{host_of('gr-hello')}"
    config = httpx.get(f"{router}/apps/gr/hello/config", headers=headers, timeout=10).json()
    assert config["root"] == f"{base}/apps/gr/hello"
    page = httpx.get(f"{router}/apps/gr/hello/", headers=headers, timeout=10)
    assert page.status_code == 200 and f"{base}/apps/gr/hello" in page.text


def _streamlit_session(url: str, origin: str) -> list[str]:
    """Open Streamlit's stream like its browser page does, ask for a run, return the message kinds seen
    until the script finishes."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    kinds: list[str] = []
    with connect(url, subprotocols=["streamlit"], origin=origin, proxy=None, open_timeout=10) as ws:
        assert ws.subprotocol == "streamlit"
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        ws.send(rerun.SerializeToString())
        while "script_finished" not in kinds:
            message = ForwardMsg()
            message.ParseFromString(ws.recv(timeout=20))
            kinds.append(message.WhichOneof("type"))
    return kinds


def test_streamlit_page_and_websocket_path_based(router: str, sdk_apps, resolve_apps_domain) -> None:
    port = router.rsplit(":", 1)[1]
    # A public host that is not localhost: Streamlit accepts it only if the Host header reached it.
    public = f"public.test:{port}"
    assert httpx.get(f"http://127.0.0.1:{port}/apps/st/hello/", timeout=10).status_code == 200
    assert httpx.get(f"{router}/apps/st/hello/_stcore/health", timeout=10).text == "ok"
    kinds = _streamlit_session(f"ws://{public}/apps/st/hello/_stcore/stream", origin=f"http://{public}")
    assert kinds[0] == "new_session" and "delta" in kinds


def test_streamlit_websocket_host_based(host_of, sdk_apps, resolve_apps_domain) -> None:
    host = host_of("st-hello")
    assert httpx.get(f"http://{host}/", timeout=10).status_code == 200
    # The page opened at "/" computes its stream URL from there: /_stcore/stream.
    kinds = _streamlit_session(f"ws://{host}/_stcore/stream", origin=f"http://{host}")
    assert "new_session" in kinds and "delta" in kinds


def test_streamlit_cross_origin_refusal_is_passed_on(router: str, sdk_apps) -> None:
    url = router.replace("http://", "ws://") + "/apps/st/hello/_stcore/stream"
    with pytest.raises(InvalidStatus) as e:
        connect(url, subprotocols=["streamlit"], origin="http://evil.example", proxy=None)
    assert e.value.response.status_code == 403
