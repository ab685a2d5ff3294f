"""Iterators over AIP-158 list RPCs (`page_size`, `page_token`, `next_page_token`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def items_field(response_descriptor) -> str:
    """The repeated message field holding a list response's items (the first one declared)."""
    for field in response_descriptor.fields:
        if _is_repeated(field) and field.type == FieldDescriptor.TYPE_MESSAGE \
                and not field.message_type.GetOptions().map_entry:
            return field.name
    raise ValueError(f"{response_descriptor.full_name} has no repeated message field")


def _is_repeated(field) -> bool:
    # `is_repeated` appeared in protobuf 6; `label` is deprecated there but still present.
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return flag() if callable(flag) else bool(flag)
    return field.label == FieldDescriptor.LABEL_REPEATED


def pages(call: Callable[..., Message], request: Message, *, timeout: float | None = None,
          max_pages: int | None = None, **call_kwargs: Any) -> Iterator[Message]:
    """Yields each response page of a list RPC, following `next_page_token` to the end.

    `request` is not modified; each page is fetched with its own deadline of `timeout`
    seconds (the channel's default when None)."""
    current = type(request)()
    current.CopyFrom(request)
    seen: set[str] = set()
    count = 0
    while True:
        kwargs = dict(call_kwargs)
        if timeout is not None:
            kwargs["timeout"] = timeout
        response = call(current, **kwargs)
        yield response
        count += 1
        token = response.next_page_token
        if not token or (max_pages is not None and count >= max_pages):
            return
        if token in seen:
            # A server handing back a token it already gave would loop forever.
            raise RuntimeError(f"the server repeated page token {token!r}")
        seen.add(token)
        current.page_token = token


def paginate(call: Callable[..., Message], request: Message, *, field: str | None = None,
             timeout: float | None = None, **call_kwargs: Any) -> Iterator[Message]:
    """Yields every item of a list RPC across pages, for example::

        for profile in paginate(stub.ListProfiles, pb.ListProfilesRequest(page_size=500)):
            ...

    `field` names the response's repeated field; by default the first repeated message
    field of the response."""
    for page in pages(call, request, timeout=timeout, **call_kwargs):
        name = field or items_field(page.DESCRIPTOR)
        yield from getattr(page, name)
