"""How each SDK is served under the path-based root /apps/{owner}/{name} (findings in docs/router.md)."""

from __future__ import annotations


def root_path_env(sdk: str, prefix: str) -> tuple[dict[str, str], bool]:
    """(env vars for the app's container, strip_prefix) for a Space whose path-based root is `prefix`.

    SPACEYARD_ROOT_PATH is always set: it is the builder's handle (`--server.baseUrlPath` for Streamlit) and
    tells any app where its path-based URL lives.
    - gradio: GRADIO_ROOT_PATH makes Gradio write `prefix` into the URLs it hands the browser and clients;
      it serves at "/" like behind any proxy, so the router strips the prefix.
    - streamlit: serves only under its base URL path (404 at "/"), so the router forwards the path whole.
    - docker: the app serves at "/" as on the Hub, so strip. GRADIO_ROOT_PATH is set too because many Docker
      Spaces run Gradio; other apps ignore it.
    - static: files served at "/" with relative links; strip.
    """
    env = {"SPACEYARD_ROOT_PATH": prefix}
    if sdk in ("gradio", "docker"):
        return env | {"GRADIO_ROOT_PATH": prefix}, True
    if sdk == "streamlit":
        return env | {"STREAMLIT_SERVER_BASE_URL_PATH": prefix}, False
    if sdk == "static":
        return env, True
    raise ValueError(f"unknown sdk {sdk!r}")
