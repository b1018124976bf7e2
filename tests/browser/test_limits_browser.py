"""Request size limits as a person meets them: an archive too large to import is refused beside
the import form, before it is sent, and the server's own refusal reads the same when the page's
check is not there."""

import io
import random
import zipfile

from playwright.sync_api import expect

from tests.browser.conftest import live_app, log_in

LIMIT = 4096


def _archive(tmp_path) -> str:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("conversation.json", random.Random(7).randbytes(4 * LIMIT))
    path = tmp_path / "big.zip"
    path.write_bytes(data.getvalue())
    return str(path)


def test_an_archive_over_the_import_limit_is_refused_in_place(new_context, tmp_path):
    with live_app({"PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES": str(LIMIT)}) as server:
        server.create_user("importer")
        page = new_context().new_page()
        log_in(page, server, "importer")
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if "/import/" in r.url else None)

        form = page.locator("[data-testid=import-form]")
        form.locator("input[type=file]").set_input_files(_archive(tmp_path))
        form.locator("[data-testid=import]").click()
        error = form.locator("[data-testid=error]")
        expect(error).to_contain_text("This archive is more than 4 KB; archives of up to 4 KB")
        assert posts == []  # refused before a byte was sent

        # Without the page's check, the app refuses it from its declared length.
        form.locator("input[type=file]").evaluate("input => delete input.dataset.maxBytes")
        form.locator("[data-testid=import]").click()
        expect(error).to_contain_text("This archive is 16 KB; archives of up to 4 KB")
        assert len(posts) == 1
