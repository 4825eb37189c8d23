"""Builders of Gmail API payloads for the Gmail adapter tests (shapes per the Gmail discovery doc).

``full_from_mime`` turns a real MIME message into the ``format=full`` resource Gmail would return
for it (partIds "", "0", "0.1"; transfer-decoded bodies as base64url; attachments optionally
behind attachment ids), so the same message can be fetched in full and raw mode and compared.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from email.message import Message
from typing import Any

from mailparity.testing._render import STORE_POLICY, content_type, header_text

BASE = "https://gmail.googleapis.com/gmail/v1/users/me"
BATCH_URL = "https://gmail.googleapis.com/batch/gmail/v1"
TOKEN_URL = "https://oauth2.googleapis.com/token"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _part(
    msg: Message, part_id: str, attachments: dict[str, bytes], as_attachment_ids: bool
) -> dict[str, Any]:
    headers = [{"name": k, "value": header_text(v)} for k, v in msg.raw_items()]
    ctype = content_type(msg)
    filename = msg.get_filename() or ""
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": ctype,
        "filename": filename,
        "headers": headers,
    }
    if msg.is_multipart() and not ctype.startswith("message/"):
        out["body"] = {"size": 0}
        children = msg.get_payload()
        assert isinstance(children, list)
        out["parts"] = [
            _part(child, f"{part_id}.{i}" if part_id else str(i), attachments, as_attachment_ids)
            for i, child in enumerate(children)
        ]
        return out
    # An attached message (message/*): the bytes as received, as Gmail serves them.
    payload = msg.get_payload(decode=True) or b""
    is_body = ctype in ("text/plain", "text/html") and not filename
    if as_attachment_ids and not is_body:
        attachment_id = f"ATT_{part_id.replace('.', '_') or 'root'}"
        attachments[attachment_id] = payload
        out["body"] = {"attachmentId": attachment_id, "size": len(payload)}
    else:
        out["body"] = {"size": len(payload), "data": b64url(payload)}
    return out


def full_from_mime(
    raw: bytes,
    *,
    message_id: str = "18f3c2a9d1e4b7a0",
    thread_id: str = "18f3c2a9d1e4b7a0",
    internal_date: str = "1767225600000",
    label_ids: list[str] | None = None,
    as_attachment_ids: bool = False,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The ``format=full`` Message for ``raw``, and {attachmentId: bytes} when requested."""
    msg = email.message_from_bytes(raw, policy=STORE_POLICY)
    attachments: dict[str, bytes] = {}
    payload = _part(msg, "", attachments, as_attachment_ids)
    return (
        {
            "id": message_id,
            "threadId": thread_id,
            "labelIds": label_ids or ["INBOX", "UNREAD"],
            "snippet": "",
            "historyId": "9876543210",
            "internalDate": internal_date,
            "sizeEstimate": len(raw),
            "payload": payload,
        },
        attachments,
    )


def raw_resource(
    raw: bytes,
    *,
    message_id: str = "18f3c2a9d1e4b7a0",
    thread_id: str = "18f3c2a9d1e4b7a0",
    internal_date: str = "1767225600000",
) -> dict[str, Any]:
    """The ``format=raw`` Message for ``raw``."""
    return {
        "id": message_id,
        "threadId": thread_id,
        "labelIds": ["INBOX"],
        "internalDate": internal_date,
        "sizeEstimate": len(raw),
        "raw": b64url(raw),
    }


def history_page(
    added: list[tuple[str, list[str] | None]],
    *,
    history_id: str = "2000",
    next_page: str | None = None,
    include_history: bool = True,
) -> dict[str, Any]:
    """A history.list page; ``added`` = [(message id, labelIds or None)]."""
    page: dict[str, Any] = {"historyId": history_id}
    if include_history:
        records = []
        for n, (mid, labels) in enumerate(added):
            message: dict[str, Any] = {"id": mid, "threadId": mid}
            if labels is not None:
                message["labelIds"] = labels
            records.append(
                {"id": str(1000 + n), "messages": [{"id": mid, "threadId": mid}],
                 "messagesAdded": [{"message": message}]}
            )
        page["history"] = records
    if next_page:
        page["nextPageToken"] = next_page
    return page


def google_error(
    code: int, reason: str, message: str = "error", status: str = ""
) -> dict[str, Any]:
    err: dict[str, Any] = {
        "code": code,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
    }
    if status:
        err["status"] = status
    return {"error": err}


def batch_response(
    parts: list[tuple[str, int, Any]], boundary: str = "batch_resp_boundary"
) -> tuple[str, bytes]:
    """(content type, body) of a batch answer; parts = [(content id, status, json body)]."""
    chunks = []
    for content_id, status, body in parts:
        text = json.dumps(body)
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>"
            f"\r\n\r\nHTTP/1.1 {status} X\r\nContent-Type: application/json; charset=UTF-8\r\n"
            f"\r\n{text}\r\n"
        )
    body_text = "".join(chunks) + f"--{boundary}--\r\n"
    return f"multipart/mixed; boundary={boundary}", body_text.encode("utf-8")


def token_response(access_token: str = "ya29.new-access", **extra: Any) -> dict[str, Any]:
    return {"access_token": access_token, "expires_in": 3599, "token_type": "Bearer", **extra}
