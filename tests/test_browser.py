"""The built book in a real browser: every page opened in headless Chromium and checked.

What a reader would notice is checked on every page of `_build/html` (built here when missing or
older than its sources): math typeset by MathJax (no raw TeX left in the text, no MathJax error),
every widget's static view rendered, every image loaded, every internal link pointing at a file
and an anchor that exist, and no JavaScript error; each chapter's launch buttons (Colab, Binder,
Thebe live code) point at that chapter's notebook; search finds pages. A full-page screenshot of
each page goes to `_build/screenshots/<page>.png`, with a summary in `report.json` beside them.

Offline, and the deployed pages unchanged. The pages load MathJax, require.js and the widget
manager from CDNs that CI cannot reach. Chromium is driven over the DevTools protocol (CDP) on a
pipe (the standard library is the whole driver), and the `Fetch` domain intercepts every request:
pages come from a local HTTP server over `_build/html`, byte for byte, and each CDN URL is
answered from a copy of the same npm package version taken from registry.npmjs.org and cached in
`.ci-cache/browser-assets/`. No request leaves the machine; an unknown external one fails the page.
cdnjs's `require.min.js` is pinned by a subresource-integrity hash and npm ships require.js only
unminified: uglify-js 3.0.28 with its default options (run here inside Chromium) reproduces
cdnjs's file byte for byte, and the hash is checked before the file is used.

Chromium: Debian's `chromium` (`.ci/run` installs it). Without it these tests skip, or fail when
MOLLIFY_REQUIRE_BROWSER=1 (as in CI).
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import io
import json
import mimetypes
import os
import queue
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from functools import partial
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CACHE = ROOT / ".ci-cache" / "browser-assets"
REGISTRY = "https://registry.npmjs.org"
REQUIRE_BROWSER = os.environ.get("MOLLIFY_REQUIRE_BROWSER") == "1"
# uglify-js 3.0.28, default options: reproduces cdnjs's require.js/2.3.4/require.min.js exactly.
UGLIFY = ("uglify-js", "3.0.28")
UGLIFY_FILES = ["lib/utils.js", "lib/ast.js", "lib/parse.js", "lib/transform.js", "lib/scope.js",
                "lib/output.js", "lib/compress.js", "lib/sourcemap.js", "lib/mozilla-ast.js",
                "lib/propmangle.js", "lib/minify.js", "tools/exports.js"]
VIEWPORT = (1280, 900)

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
DOCS = [TOC["root"]] + [c["file"] for part in TOC.get("parts", []) for c in part["chapters"]]
CHAPTERS = [d for d in DOCS if (ROOT / f"{d}.ipynb").exists()]
# Every page of the site: the table of contents, and the pages Sphinx and sphinx-proof generate.
PAGES = [f"{d}.html" for d in DOCS] + ["genindex.html", "prf-prf.html", "search.html"]
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
REPO = REPO_URL.removeprefix("https://github.com/")
BRANCH = CONFIG["repository"].get("branch", "main")


def _unavailable(why: str):
    """Skip, or fail where the browser tests are required (CI)."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{why} (MOLLIFY_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(why)


# --- the book ------------------------------------------------------------------------------------


def _sources() -> list[Path]:
    files = [ROOT / "_config.yml", ROOT / "_toc.yml"]
    files += [p for p in (ROOT / "book").rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts]
    return files


def _book_is_current() -> bool:
    stamp = HTML / ".buildinfo"  # rewritten by every build
    if not stamp.exists() or not all((HTML / page).exists() for page in PAGES):
        return False
    return max(p.stat().st_mtime for p in _sources()) <= stamp.stat().st_mtime


@pytest.fixture(scope="module")
def book() -> Path:
    """`_build/html`, built with `jupyter-book build .` unless it is newer than every source."""
    if not _book_is_current():
        try:
            import jupyter_book  # noqa: F401
        except ImportError:
            _unavailable("the book is not built and jupyter-book is not installed")
        build = subprocess.run(
            [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", "."],
            cwd=ROOT, capture_output=True, text=True, timeout=900,
        )
        assert build.returncode == 0 and (HTML / "index.html").exists(), (
            "jupyter-book build . failed:\n" + (build.stdout + build.stderr)[-3000:]
        )
    return HTML


# --- CDN files from npm ----------------------------------------------------------------------------


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _pick_version(spec: str, versions: list[str], latest: str) -> str:
    """The npm version a CDN serves for `name@spec`: exact, a prefix (`3`, `3.2`), ^ or ~."""
    stable = sorted((v for v in versions if re.fullmatch(r"\d+\.\d+\.\d+", v)), key=_version_key)
    if spec in ("", "latest"):
        return latest
    if re.fullmatch(r"\d+\.\d+\.\d+", spec):
        return spec
    if re.fullmatch(r"\d+(\.\d+)?", spec):
        match = [v for v in stable if v.startswith(spec + ".")]
    elif spec[0] in "^~" and re.fullmatch(r"\d+\.\d+\.\d+", spec[1:]):
        low = _version_key(spec[1:])
        depth = 1 if spec[0] == "^" else 2
        match = [v for v in stable if _version_key(v)[:depth] == low[:depth] and _version_key(v) >= low]
    else:
        raise ValueError(f"unsupported version range {spec!r}")
    if not match:
        raise LookupError(f"no version matches {spec!r}")
    return match[-1]


class Assets:
    """Files of npm packages, fetched from the npm registry once and kept in CACHE."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.aliases_file = cache / "versions.json"
        self.aliases = json.loads(self.aliases_file.read_text()) if self.aliases_file.exists() else {}
        self.lock = threading.RLock()
        self.minify = None  # set by the browser fixture: JS source -> minified JS source
        self.integrity: dict[str, str] = {}  # CDN URL -> the `integrity` attribute the pages give

    def package(self, name: str, spec: str) -> Path:
        """The unpacked folder of the npm package `name` at the version `spec` resolves to."""
        with self.lock:
            key = f"{name}@{spec}"
            version = self.aliases.get(key)
            if version is None:
                quoted = name.replace("/", "%2f")
                if re.fullmatch(r"\d+\.\d+\.\d+", spec):
                    version = spec
                else:
                    meta = json.loads(_download(f"{REGISTRY}/{quoted}"))
                    version = _pick_version(spec, list(meta["versions"]), meta["dist-tags"]["latest"])
                self.aliases[key] = version
                self.cache.mkdir(parents=True, exist_ok=True)
                self.aliases_file.write_text(json.dumps(self.aliases, indent=1, sort_keys=True))
            folder = self.cache / "npm" / f"{name}@{version}"
            if not folder.is_dir():
                self._unpack(name, version, folder)
            return folder

    def _unpack(self, name: str, version: str, folder: Path) -> None:
        meta = json.loads(_download(f"{REGISTRY}/{name.replace('/', '%2f')}/{version}"))
        data = _download(meta["dist"]["tarball"])
        algorithm, _, digest = meta["dist"]["integrity"].partition("-")
        assert base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == digest, (
            f"{name}@{version}: the tarball does not match the registry's integrity hash"
        )
        tmp = Path(tempfile.mkdtemp(dir=self.cache, prefix=".unpack-"))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts[1:]  # drop the tarball's top folder ("package")
                if not member.isfile() or not parts or ".." in parts:
                    continue
                target = tmp.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(folder)
        except OSError:  # another run unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)

    def requirejs_min(self, version: str, url: str) -> Path:
        """cdnjs's require.min.js, rebuilt from npm's require.js and checked against its hash."""
        target = self.cache / "cdnjs" / "require.js" / version / "require.min.js"
        with self.lock:
            if not target.exists():
                source = (self.package("requirejs", version) / "require.js").read_text()
                assert self.minify is not None, "require.min.js is needed before the browser runs"
                uglify = self.package(*UGLIFY)
                code = self.minify(source, [(uglify / f).read_text() for f in UGLIFY_FILES])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(code)
        expected = self.integrity.get(url)
        if expected:
            algorithm, _, digest = expected.partition("-")
            actual = base64.b64encode(hashlib.new(algorithm, target.read_bytes()).digest()).decode()
            assert actual == digest, (
                f"{target} does not match the pages' integrity hash {expected}: the browser would "
                "refuse it. Delete it to rebuild it, or find the minifier cdnjs used for this version."
            )
        return target

    def file_for(self, url: str) -> Path | None:
        """The local copy of a CDN URL, or None for a URL no rule covers."""
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.unquote(parts.path)
        if parts.netloc == "cdnjs.cloudflare.com":
            m = re.fullmatch(r"/ajax/libs/require\.js/([\d.]+)/require\.min\.js", path)
            return self.requirejs_min(m.group(1), url) if m else None
        if parts.netloc == "cdn.jsdelivr.net" and path.startswith("/npm/"):
            path = path[len("/npm"):]
        elif parts.netloc != "unpkg.com":
            return None
        m = re.fullmatch(r"/((?:@[^/@]+/)?[^/@]+)(?:@([^/]*))?(/.+)", path)
        if not m:
            return None
        folder = self.package(m.group(1), m.group(2) or "latest")
        file = (folder / m.group(3).lstrip("/")).resolve()
        return file if file.is_file() and folder.resolve() in file.parents else None

    def prefetch(self, html_dir: Path) -> list[str]:
        """Fetch every CDN file the built pages name; return their URLs."""
        urls = set()
        for page in html_dir.rglob("*.html"):
            text = page.read_text(errors="replace")
            for tag in re.findall(r"<script\b[^>]*>", text):
                src = re.search(r'\bsrc="(https?://[^"]+)"', tag)
                if src:
                    urls.add(src.group(1))
                    integrity = re.search(r'\bintegrity="([^"]+)"', tag)
                    if integrity:
                        self.integrity[src.group(1)] = integrity.group(1)
        missing = [url for url in sorted(urls) if self.file_for(url) is None]
        assert not missing, f"the pages load files from CDNs that no rule here covers: {missing}"
        return sorted(urls)


@pytest.fixture(scope="module")
def assets() -> Assets:
    return Assets(CACHE)


# --- the site, served as it would be deployed -------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        if str(code).isdigit() and int(code) >= 400 and self.path != "/favicon.ico":
            self.server.errors.append(f"{code} {self.path}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(book):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(book)))
    server.errors = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}/"
    yield server
    server.shutdown()
    server.server_close()


# --- Chromium over the DevTools protocol ------------------------------------------------------------


class CDPError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium driven over `--remote-debugging-pipe` (CDP messages on fds 3 and 4)."""

    def __init__(self, executable: str, profile: Path):
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()
        # Move the two pipe ends to fds 3 and 4 in the child, whatever numbers they have here
        # (through spare fds, as either may be 3 or 4 already; bash, as dash knows only fds 0-9).
        shell = (f"exec 100<&{to_chrome_r} 101>&{from_chrome_w}; exec 3<&100 4>&101 100<&- 101>&-; "
                 'exec "$@"')
        flags = [
            "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--force-color-profile=srgb",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", f"--user-data-dir={profile}", "about:blank",
        ]
        self.proc = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", shell, "bash", executable, *flags],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: dict[int, list] = {}
        self._handlers: dict[str, list] = {}
        self._events: queue.Queue = queue.Queue()
        self.handler_errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._handle, daemon=True).start()
        self.session = None

    def _read(self) -> None:
        buffer = bytearray()
        while chunk := os.read(self._in, 1 << 20):
            buffer += chunk
            while (end := buffer.find(b"\0")) >= 0:
                message = json.loads(bytes(buffer[:end]))
                del buffer[: end + 1]
                if "id" in message:
                    waiter = self._pending.pop(message["id"], None)
                    if waiter:
                        waiter.append(message)
                        waiter[0].set()
                else:
                    self._events.put(message)
        for waiter in list(self._pending.values()):
            waiter[0].set()

    def _handle(self) -> None:
        while True:
            message = self._events.get()
            for handler in self._handlers.get(message["method"], []):
                try:
                    handler(message.get("params", {}))
                except Exception as error:  # noqa: BLE001 - report, keep serving
                    self.handler_errors.append(f"{message['method']}: {error!r}")

    def on(self, method: str, handler) -> None:
        self._handlers.setdefault(method, []).append(handler)

    def send(self, method: str, params: dict | None = None, *, session: bool = True,
             timeout: float = 60) -> dict:
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            waiter = [threading.Event()]
            self._pending[message_id] = waiter
        message = {"id": message_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        with self._write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._out, view):]
        if not waiter[0].wait(timeout) or len(waiter) < 2:
            self._pending.pop(message_id, None)
            raise CDPError(f"{method}: no answer from Chromium in {timeout} s")
        reply = waiter[1]
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        return reply["result"]

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        self.session = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False,
        })

    def evaluate(self, expression: str, *, await_promise: bool = False, timeout: float = 60):
        result = self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise,
            "timeout": timeout * 1000,
        }, timeout=timeout + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return True
            except CDPError:
                pass  # the document is being replaced
            time.sleep(0.1)
        return False

    def goto(self, url: str, timeout: float = 60) -> None:
        self.send("Page.navigate", {"url": url})
        target = url.split("#")[0]
        loaded = f"location.href.split('#')[0] === {json.dumps(target)} && document.readyState === 'complete'"
        assert self.wait_for(loaded, timeout), f"{url} did not finish loading in {timeout} s"

    def screenshot(self, path: Path) -> None:
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": VIEWPORT[0], "height": min(size["height"], 30000), "scale": 1}
        data = self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "clip": clip,
        }, timeout=120)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except CDPError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def browser(assets, site, book, tmp_path_factory):
    executable = _find_chromium()
    if executable is None:
        _unavailable("Chromium is not installed (Debian: apt-get install chromium)")
    chrome = Chromium(executable, tmp_path_factory.mktemp("chromium-profile"))
    try:
        chrome.open_page()
    except CDPError as error:
        chrome.proc.kill()
        _unavailable(f"Chromium did not start: {error}")
    chrome.log = {"errors": [], "blocked": [], "served": set()}

    def minify(source: str, uglify_sources: list[str]) -> str:
        return chrome.evaluate(
            "(() => { const U = {}; new Function('MOZ_SourceMap', 'exports', "
            f"{json.dumps(chr(10).join(uglify_sources))})(null, U); "
            f"const r = U.minify({json.dumps(source)}); if (r.error) throw r.error; return r.code; }})()"
        )

    assets.minify = minify
    try:
        assets.prefetch(book)
    except OSError as error:  # no route to the npm registry and nothing cached
        chrome.close()
        _unavailable(f"cannot fetch the pages' CDN files from {REGISTRY}: {error}")

    def paused(params):
        url, request_id = params["request"]["url"], params["requestId"]
        if url.startswith(site.base):
            chrome.send("Fetch.continueRequest", {"requestId": request_id})
            return
        try:
            file = assets.file_for(url)
        except Exception as error:  # noqa: BLE001
            file, url = None, f"{url} ({error!r})"
        if file is None:
            chrome.log["blocked"].append(url)
            chrome.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "BlockedByClient"})
            return
        chrome.log["served"].add(url)
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            kind = "application/javascript; charset=utf-8"
        chrome.send("Fetch.fulfillRequest", {
            "requestId": request_id, "responseCode": 200,
            "responseHeaders": [
                {"name": "Content-Type", "value": kind},
                {"name": "Access-Control-Allow-Origin", "value": "*"},
                {"name": "Cache-Control", "value": "public, max-age=3600"},
            ],
            "body": base64.b64encode(file.read_bytes()).decode(),
        }, timeout=120)

    def exception(params):
        details = params["exceptionDetails"]
        text = details.get("exception", {}).get("description") or details.get("text", "")
        chrome.log["errors"].append(f"uncaught: {text.splitlines()[0] if text else details}")

    def console(params):
        if params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            chrome.log["errors"].append(f"console.error: {args[:300]}")

    def log_entry(params):
        entry = params["entry"]
        if entry.get("level") == "error":
            chrome.log["errors"].append(f"{entry.get('source')}: {entry.get('text', '')[:300]} {entry.get('url', '')}")

    chrome.on("Fetch.requestPaused", paused)
    chrome.on("Runtime.exceptionThrown", exception)
    chrome.on("Runtime.consoleAPICalled", console)
    chrome.on("Log.entryAdded", log_entry)
    chrome.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]})
    yield chrome
    chrome.close()


# --- visiting a page -----------------------------------------------------------------------------

# Runs in the page once it has loaded, MathJax has typeset it and the widgets have rendered.
COLLECT = r"""
(() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const math = [...article.querySelectorAll('.math')];
  const clone = article.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea, svg, .math, mjx-container, .highlight, .headerlink')
       .forEach(e => e.remove());
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const launch = document.querySelector('.dropdown-launch-buttons');
  return {
    title: document.title,
    height: document.documentElement.scrollHeight,
    mathjax: window.MathJax && window.MathJax.version || null,
    requirejs: window.requirejs && window.requirejs.version || null,
    math: math.length,
    math_unrendered: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.trim().slice(0, 80)),
    math_errors: [...article.querySelectorAll('mjx-merror')].map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120)),
    mjx: article.querySelectorAll('mjx-container').length,
    text: clone.textContent.replace(/\s+/g, ' '),
    widgets: views.map(v => {
      const area = v.previousElementSibling;
      const ok = !!(area && area.classList.contains('widget-subarea') && area.children.length);
      return {ok, height: ok ? area.getBoundingClientRect().height : 0, text: area ? area.textContent.trim().slice(0, 80) : ''};
    }),
    // Controls must fit the text column: a row of too many controls squashes sliders to nothing
    // or pushes them past the column's edge, where the page cuts them off.
    widget_layout: [...document.querySelectorAll('.widget-subarea')].flatMap((area, k) =>
      [...area.querySelectorAll('.widget-inline-hbox')].flatMap(w => {
        const r = w.getBoundingClientRect(), col = article.getBoundingClientRect();
        const name = `widget ${k} control ${JSON.stringify(((w.querySelector('.widget-label') || {}).textContent || '').trim())}`;
        const track = w.querySelector('.slider-container');
        const found = [];
        if (r.width < 1) found.push(`${name} has no room at all (width 0)`);
        else if (r.right > col.right + 1) found.push(`${name} runs ${Math.round(r.right - col.right)} px past the text column`);
        if (track && r.width >= 1 && track.getBoundingClientRect().width < 40)
          found.push(`${name}: slider squashed to ${Math.round(track.getBoundingClientRect().width)} px`);
        return found;
      })),
    widget_errors: [...document.querySelectorAll('.jupyter-widgets, .widget-subarea')]
      .map(e => e.textContent).filter(t => /Error (displaying|creating) widget|Could not create a view/.test(t))
      .map(t => t.trim().slice(0, 120)),
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0, alt: i.alt})),
    links: [...document.querySelectorAll('a[href]')].map(a => ({href: a.href, text: a.textContent.trim().slice(0, 60)})),
    launch: launch ? [...launch.querySelectorAll('a, button.dropdown-item')].map(a => ({
      title: a.title || a.getAttribute('data-bs-original-title') || a.textContent.trim(), href: a.href || '',
      onclick: a.getAttribute('onclick') || '', cls: a.className})) : [],
    thebe_config: (document.querySelector('script[type="text/x-thebe-config"]') || {}).textContent || null,
  };
})()
"""

RAW_TEX = re.compile(
    r"\$\$|\\[()\[\]]|\\(?:frac|begin|end|varepsilon|eps|mathbb|mathrm|operatorname|sum|int|nabla|sqrt"
    r"|hat|bar|tilde|left|right|alpha|beta|sigma|theta|eta|mu|lambda|le|ge|cdot|in|to|infty|partial|E|R)\b"
    r"|(?<![\w$\\])\$(?=\S)[^$\n]{1,80}?(?<=\S)\$(?![\w$])"
)
WAIT_WIDGETS = """[...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
  .every(v => v.previousElementSibling && v.previousElementSibling.classList.contains('widget-subarea')
              && v.previousElementSibling.children.length)"""

# Errors every deployed page shows, from the theme and widget stack rather than the book; each is
# matched exactly and listed in report.json, and anything else fails the page.
KNOWN_ERRORS = {
    # sphinx-thebe 0.3.1 under jupyter-book 1.0.4 writes its inline `const THEBE_JS_URL = ...`
    # script twice; the second copy throws, the first already defined the same value.
    "sphinx-thebe declares THEBE_JS_URL twice":
        r"uncaught: SyntaxError: Identifier 'THEBE_JS_URL' has already been declared",
    # ipywidgets 8 (html-manager 1.0.6) typesets each widget description with MathJax 2's
    # MathJax.Hub.Queue, after setting the text; the book loads MathJax 3. Only TeX inside a
    # description would stay raw, and the raw-TeX check below reads widget text too.
    "ipywidgets 8 calls MathJax 2's MathJax.Hub.Queue":
        r"uncaught: TypeError: Cannot read properties of undefined \(reading 'Queue'\)",
    # html-manager 1.0.6 asks for its Font Awesome files relative to the page (requirejs base),
    # where no server has them; the book's widgets show no icons.
    "html-manager requests its icon fonts relative to the page": (
        r"(network: Failed to load resource: the server responded with a status of 404 .*|404 )"
        r"/?(book/)?@jupyter-widgets/html-manager/dist/[0-9a-f]{20}\.(woff2?|ttf|eot|svg)"
    ),
    # pydata-sphinx-theme 0.17 with no default_mode (jupyter-book sets none) on a first visit.
    "pydata-sphinx-theme has no default mode":
        r"console.error: Got invalid theme mode: \. Resetting to auto\.",
}


def _known(error: str) -> str | None:
    return next((why for why, pattern in KNOWN_ERRORS.items() if re.search(pattern, error)), None)


_IDS: dict[Path, set[str]] = {}


def _ids(file: Path) -> set[str]:
    if file not in _IDS:
        text = file.read_text(errors="replace")
        _IDS[file] = {html.unescape(m) for m in re.findall(r'\b(?:id|name)="([^"]*)"', text)}
    return _IDS[file]


def _broken_link(href: str, base: str, root: Path) -> str | None:
    parts = urllib.parse.urlsplit(href)
    path = urllib.parse.unquote(parts.path)[len(urllib.parse.urlsplit(base).path):]
    file = root / path
    if path == "" or path.endswith("/"):
        file = file / "index.html"
    if not file.is_file():
        return "no such file"
    fragment = urllib.parse.unquote(parts.fragment)
    if fragment and file.suffix == ".html" and fragment not in _ids(file):
        return f"no id {fragment!r} in {path}"
    return None


_REPORTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def visit(browser, site, book):
    """Open a page (once), wait for MathJax and the widgets, screenshot it and collect a report."""
    summary = {}

    def run(page: str) -> dict:
        if page in _REPORTS:
            return _REPORTS[page]
        browser.log["errors"].clear()
        browser.log["blocked"].clear()
        site.errors.clear()
        start = time.monotonic()
        browser.goto(site.base + page)
        problems: dict[str, list[str]] = {}
        if browser.evaluate("!!document.querySelector('.math')"):
            ok = browser.evaluate(
                "window.MathJax && MathJax.startup && MathJax.startup.promise.then(() => true)",
                await_promise=True, timeout=60,
            )
            if not ok:
                problems.setdefault("math", []).append("MathJax did not load")
        state = "script[type=\"application/vnd.jupyter.widget-state+json\"]"
        if browser.evaluate(f"!!document.querySelector('{state}')"):
            browser.wait_for(WAIT_WIDGETS, timeout=30)
        browser.wait_for("[...document.images].every(i => i.complete)", timeout=30)
        time.sleep(0.2)  # let late console errors arrive
        report = browser.evaluate(COLLECT)
        if page.removesuffix(".html") in DOCS:
            browser.screenshot(SCREENSHOTS / f"{Path(page).stem}.png")
        report["seconds"] = round(time.monotonic() - start, 1)

        add = problems.setdefault
        for tex in report["math_unrendered"]:
            add("math", []).append(f"not typeset by MathJax: {tex!r}")
        for error in report["math_errors"]:
            add("math", []).append(f"MathJax error: {error}")
        spans: list[list[int]] = []  # raw TeX, nearby finds merged into one quoted passage
        for m in RAW_TEX.finditer(report["text"]):
            if spans and m.start() - spans[-1][1] < 60:
                spans[-1][1] = m.end()
            else:
                spans.append([m.start(), m.end()])
        for start, end in spans:
            passage = report["text"][max(0, start - 60): min(end, start + 240) + 30]
            add("raw TeX in the text", []).append(f"...{passage}...")
        for i, widget in enumerate(report["widgets"]):
            if not widget["ok"] or widget["height"] < 1:
                add("widgets", []).append(f"widget view {i} not rendered ({widget['text']!r})")
        for error in report["widget_errors"] + report["widget_layout"]:
            add("widgets", []).append(error)
        for image in report["images"]:
            if not image["ok"]:
                add("images", []).append(f"did not load: {image['src'][:120]} (alt {image['alt']!r})")
        for link in report["links"]:
            if link["href"].startswith(site.base):
                why = _broken_link(link["href"], site.base, book)
                if why:
                    add("internal links", []).append(
                        f"{link['text']!r} -> {link['href'][len(site.base):]}: {why}")
        known = report["known_errors"] = {}
        for error in browser.log["errors"] + site.errors:
            if why := _known(error):
                known[why] = known.get(why, 0) + 1
            elif error in site.errors:
                add("missing files requested", []).append(error)
            elif not re.match(r"network: .* status of 404", error):  # 404s: reported as missing
                add("JavaScript errors", []).append(error)
        for url in browser.log["blocked"]:
            add("requests to unknown external hosts", []).append(url)
        report["problems"] = problems
        _REPORTS[page] = report
        summary[page] = {k: report[k] for k in ("title", "seconds", "height", "mathjax", "requirejs",
                                               "math", "mjx", "problems", "known_errors")}
        summary[page].update(widgets=len(report["widgets"]), images=len(report["images"]),
                             links=len(report["links"]))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "report.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
        return report

    return run


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_completely(page, visit):
    """Math typeset, widgets and images shown, internal links resolve, no JS error, nothing
    fetched from outside but the CDN files the deployed page also loads."""
    problems = visit(page)["problems"]
    assert not problems, f"{page}:\n" + "\n".join(
        f"  {kind}:\n" + "\n".join(f"    - {p}" for p in found) for kind, found in problems.items()
    )


def _has_math(doc: str) -> bool:
    source = next(p for p in (ROOT / f"{doc}.ipynb", ROOT / f"{doc}.md") if p.exists())
    return "$" in source.read_text()


@pytest.mark.parametrize("page", [f"{d}.html" for d in DOCS if _has_math(d)])
def test_math_is_typeset_by_mathjax_3(page, visit):
    report = visit(page)
    assert report["mathjax"] and report["mathjax"].startswith("3."), report["mathjax"]
    assert report["math"] > 0 and report["mjx"] >= report["math"], (report["math"], report["mjx"])


@pytest.mark.parametrize("doc", CHAPTERS)
def test_chapter_launch_buttons(doc, visit):
    """Colab and Binder open this chapter's notebook; Thebe's live code runs on Binder."""
    report = visit(f"{doc}.html")
    launch = {b["title"]: b for b in report["launch"]}
    colab = f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{doc}.ipynb"
    assert launch.get("Launch on Colab", {}).get("href") == colab, launch
    binder = f"https://mybinder.org/v2/gh/{REPO}/{BRANCH}?urlpath=lab/tree/{doc}.ipynb"
    assert launch.get("Launch on Binder", {}).get("href") == binder, launch
    assert "initThebe" in launch.get("Launch Thebe", {}).get("onclick", ""), launch
    assert f'repo: "{REPO}"' in (report["thebe_config"] or ""), report["thebe_config"]
    assert (ROOT / f"{doc}.ipynb").is_file()


def test_search_finds_the_mollifiers_chapter(browser, site, book):
    browser.goto(site.base + "search.html?q=mollifier")
    assert browser.wait_for(
        "/found|did not match/.test((document.querySelector('#search-results') || {}).textContent || '')",
        timeout=30,
    ), "the search page never finished"
    hits = browser.evaluate("[...document.querySelectorAll('#search-results li a')].map(a => a.href)")
    assert hits, "searching for 'mollifier' found nothing"
    assert any("book/02_mollifiers.html" in h for h in hits), hits


def test_site_root_opens_the_introduction(browser, site, book):
    browser.send("Page.navigate", {"url": site.base})
    assert browser.wait_for(
        f"location.href === {json.dumps(site.base + TOC['root'] + '.html')}", timeout=30
    ), browser.evaluate("location.href")


def test_every_built_page_is_visited(book):
    built = {p.relative_to(book).as_posix() for p in book.rglob("*.html")
             if not any(part[0] in "._" for part in p.relative_to(book).parts)}
    assert built - {"index.html"} <= set(PAGES), sorted(built - set(PAGES))


def test_cdn_files_are_the_deployed_versions(visit, assets, browser):
    """What the pages got from "CDNs" are the npm files of the exact versions the pages name."""
    visit(f"{CHAPTERS[0]}.html")
    served = sorted(browser.log["served"])
    assert any("mathjax@3" in u for u in served), served
    for url in served:
        file = assets.file_for(url)
        assert file is not None and file.is_file(), url
    for url, integrity in assets.integrity.items():  # subresource-integrity pinned files
        algorithm, _, digest = integrity.partition("-")
        data = assets.file_for(url).read_bytes()
        assert base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == digest, url
