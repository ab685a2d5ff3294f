"""Sandboxed templates: refused at save time when broken or hostile, bounded when rendered."""

from __future__ import annotations

import time

import pytest

from services.common.errors import InvalidArgument
from services.delivery.templates import RenderError, compile_content

KNOWN = {"first_name", "city"}


def compile_body(body, channel="push", defaults=None, title=""):
    return compile_content(channel, {"body": body, "title": title}, defaults or {}, KNOWN,
                           "touches[0].content")


def test_renders_attributes_with_defaults_for_missing_values():
    content = compile_body("Hi {{ first_name }} from {{ city }}", defaults={"city": "your city"})
    assert content.render({"first_name": "Ann"})["body"] == "Hi Ann from your city"
    assert content.render({"first_name": "Ann", "city": "Oslo"})["body"] == "Hi Ann from Oslo"


@pytest.mark.parametrize("body,needle", [
    ("Hi {{ first_name ", "syntax"),
    ("Hi {{ favourite_colour }}", "unknown variable"),
    ("{{ ''.__class__.__mro__ }}", "sandbox escape"),
    ("{{ first_name|attr('__class__') }}", "sandbox escape"),
    ("{{ first_name['__class__'] }}", "sandbox escape"),
])
def test_bad_templates_are_refused_at_save(body, needle):
    with pytest.raises(InvalidArgument) as err:
        compile_body(body)
    field, description = err.value.violations[0]
    assert field == "touches[0].content.body"
    assert needle in description


def test_channel_limits():
    with pytest.raises(InvalidArgument):
        compile_body("x" * 481, channel="sms")
    with pytest.raises(InvalidArgument) as err:
        compile_content("sms", {"title": "T", "body": "b"}, {}, KNOWN, "touches[0].content")
    assert err.value.violations[0][0] == "touches[0].content.title"
    content = compile_body("{{ first_name }}", channel="push", title="{{ first_name }}")
    with pytest.raises(RenderError):
        content.render({"first_name": "y" * 300})


def test_rendering_is_bounded_in_time_and_size():
    started = time.perf_counter()
    with pytest.raises(InvalidArgument):
        compile_body("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                     "{% endfor %}", channel="email")
    with pytest.raises(InvalidArgument):
        compile_body("{{ 'x' * 100000000 }}", channel="email")
    with pytest.raises(InvalidArgument):
        compile_body("{{ 9 ** 999999 }}", channel="email")
    assert time.perf_counter() - started < 2


def test_garbage_collection_during_a_render_is_not_charged_to_it(monkeypatch):
    # A full collection that happens to start inside a render (it runs on whichever thread
    # allocates) takes the render's processor time; the render must not be suppressed as
    # too slow for it. A fake thread clock makes the collection take 5 s, far over budget.
    import gc

    from services.delivery import templates

    now = [100.0]
    monkeypatch.setattr(templates.time, "thread_time", lambda: now[0])

    def slow_collection(phase, _info):
        if phase == "start":
            now[0] += 5.0

    class Name:
        def __str__(self):
            gc.collect()
            return "Ann"

    content = compile_body("Hi {{ first_name }}")
    gc.callbacks.append(slow_collection)
    try:
        assert content.render({"first_name": Name()})["body"] == "Hi Ann"
        # Time the render itself spends still counts.
        monkeypatch.setattr(templates, "MAX_RENDER_SECONDS", -1.0)
        with pytest.raises(RenderError):
            content.render({"first_name": "Ann"})
    finally:
        gc.callbacks.remove(slow_collection)
