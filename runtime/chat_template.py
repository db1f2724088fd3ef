"""Chat templates: find a checkpoint's Jinja template and render a conversation as transformers does.

The environment matches transformers' (sandboxed, trim_blocks and lstrip_blocks, loop controls,
raise_exception, strftime_now, a tojson that keeps non-ASCII), so the rendered prompt is identical.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path

TEMPLATE_FILE = "chat_template.jinja"  # transformers 5 saves the template here


def find_chat_template(folder: Path, tokenizer_config: dict | None) -> str | None:
    """chat_template.jinja if present, else tokenizer_config.json's chat_template (a string, or a list of
    named templates, of which "default" is used)."""
    if (folder / TEMPLATE_FILE).exists():
        return (folder / TEMPLATE_FILE).read_text()
    template = (tokenizer_config or {}).get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def render_chat_template(template: str, messages: list[dict], add_generation_prompt: bool,
                         special_tokens: dict[str, str | None], **kwargs) -> str:
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    return _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     **special_tokens, **kwargs)


@lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)
