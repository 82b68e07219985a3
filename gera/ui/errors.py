"""One rule for every callback: a user-facing problem becomes a visible error and the app keeps
serving; anything else is logged with its traceback and shown without server details. No
message carries a server path: a visitor's own file keeps its name, folders are cut."""
from __future__ import annotations

import functools
import inspect
import logging
import re
from typing import Callable

import gradio as gr

from gera.errors import GeraError

log = logging.getLogger(__name__)
UNEXPECTED = ("Something went wrong on the server while doing that (it has been logged). Try "
              "again, or with other settings.")


# An absolute path of two or more parts: what a server path looks like inside a message.
_SERVER_PATH = re.compile(r"""(?<![\w.~/])/(?!/)(?:[^\s'"“”(),:]+/)+([^\s'"“”(),:]*)""")


def without_server_paths(message: str) -> str:
    """The message with every absolute path cut to its last part: a visitor learns nothing of
    the server's folders (their own file keeps its name)."""
    return _SERVER_PATH.sub(lambda m: m.group(1) or "…", message)


def _as_ui_error(err: BaseException) -> gr.Error:
    if isinstance(err, gr.Error):
        return err
    if isinstance(err, GeraError):
        return gr.Error(without_server_paths(str(err)))
    log.error("unexpected error in a callback", exc_info=err)
    return gr.Error(UNEXPECTED)


def errors_as_ui(fn: Callable) -> Callable:
    """Wrap a callback (plain or generator), keeping its signature: Gradio names the API's
    parameters after it."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - see the module docstring
                raise _as_ui_error(err) from None
        return stream

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - see the module docstring
            raise _as_ui_error(err) from None
    return run
