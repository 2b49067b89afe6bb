"""A page served from another origin, in headless Chromium, uploads an object with a presigned
PUT URL and reads it back with a presigned GET (CORS preflight included). Needs Debian's
`chromium` (scripts/test installs it)."""

import http.server
import shutil
import subprocess
import threading

from conftest import make_client, unique_bucket_name

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html><html><body><pre id="out">running</pre><script>
(async () => {
  const out = document.getElementById('out');
  try {
    const put = await fetch(%(put)r, {method: 'PUT', body: 'hello from the browser'});
    if (!put.ok) throw new Error('PUT ' + put.status);
    const etag = put.headers.get('ETag');
    const get = await fetch(%(get)r);
    out.textContent = 'RESULT:' + get.status + ':' + (await get.text()) + ':' + etag;
  } catch (e) {
    out.textContent = 'FAILED:' + e;
  }
})();
</script></body></html>"""


def serve_page(holder):
    """Serves holder["html"] at / from its own port (another origin than the S3 server)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = holder["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_presigned_put_and_get_from_a_browser_page(start_server, tmp_path):
    assert CHROMIUM, "chromium is not installed (scripts/test installs Debian's chromium)"
    holder = {"html": ""}
    page = serve_page(holder)
    page_url = f"http://127.0.0.1:{page.server_address[1]}/"
    srv = start_server("--allow-origin", page_url.rstrip("/"))
    s3 = make_client(srv.url, signature_version="s3v4")
    bucket = unique_bucket_name("browser")
    s3.create_bucket(Bucket=bucket)
    params = {"Bucket": bucket, "Key": "from-browser.txt"}
    holder["html"] = PAGE % {
        "put": s3.generate_presigned_url("put_object", Params=params, ExpiresIn=300),
        "get": s3.generate_presigned_url("get_object", Params=params, ExpiresIn=300),
    }
    try:
        p = subprocess.run([
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom", page_url,
        ], capture_output=True, text=True, timeout=120)
    finally:
        page.shutdown()
    assert "RESULT:200:hello from the browser:" in p.stdout, (p.stdout[-2000:], p.stderr[-2000:])
    assert (srv.data_dir / bucket / "from-browser.txt").read_bytes() == b"hello from the browser"
