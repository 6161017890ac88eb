"""Serve a generator run as a web page and a JSON API:

    python launch/serve.py --workdir=runs/fashion_vae [--host=127.0.0.1] [--port=8000]

Loads the run's newest checkpoint (or --step); its task must generate images (a
conditional GAN's generator; an AE/VAE's decoder, fed latent codes as noise). The
generator is compiled once here; then http://HOST:PORT/ serves the page (class, new
noise, seed, a walk between two noise vectors) until Ctrl-C or SIGTERM. The API is
described in jaxdl/serve/app.py. --port=0 picks a free port; the first line printed
says which.
"""

import signal
import socket
import sys
from pathlib import Path

from _tool import define_step_flag, tool_main
from absl import app, flags

flags.DEFINE_string("workdir", None, "Run directory of a run whose task generates images.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
flags.DEFINE_integer("port", 8000, "Port to listen on; 0 = any free port.")
define_step_flag()
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


@tool_main
def main():
    from werkzeug.serving import WSGIRequestHandler, make_server

    class PlainRequestLog(WSGIRequestHandler):
        """Werkzeug's request log line without its terminal colours (raw escape codes in
        a log: `[31m[1mPOST ...`)."""

        def log_request(self, code="-", size="-") -> None:
            line = self.requestline.encode("unicode_escape").decode("ascii")
            self.log("info", '"%s" %s %s', line, code, size)

    from jaxdl.errors import UserError, check
    from jaxdl.serve import Service, create_app
    from jaxdl.train.run_info import load_run

    check(0 <= FLAGS.port <= 65535, f"--port={FLAGS.port} must be in [0, 65535]")
    config, info, task, state = load_run(FLAGS.workdir, FLAGS.step)
    title = f"{Path(FLAGS.workdir).resolve().name}: {config.task.name}, step {int(state.step)}"
    service = Service(task, state, info.get("class_names", []), title=title)
    # Bound here, not by Werkzeug, which prints its own message and exits on failure.
    family = socket.AF_INET6 if ":" in FLAGS.host else socket.AF_INET
    try:
        listening = socket.create_server((FLAGS.host, FLAGS.port), family=family)
    except OSError as e:
        raise UserError(f"cannot listen on {FLAGS.host}:{FLAGS.port}: {e.strerror}") from e
    with listening:
        server = make_server(
            FLAGS.host,
            FLAGS.port,
            create_app(service),
            threaded=True,
            request_handler=PlainRequestLog,
            fd=listening.fileno(),
        )
    host, port = server.socket.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"serving {title} at http://{url_host}:{port}/", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as Ctrl-C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    app.run(main)
