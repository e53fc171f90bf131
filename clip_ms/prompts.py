"""Prompt templates: the text a label is encoded as (``--prompt "a photo of a {}."``, ``--prompts FILE``).

The official LSeg encodes the bare label (:data:`RAW_LABEL`). With templates, each label is written into every
template (``{}`` is the label's place) and, as CLIP's zero-shot classifiers do, the text features of its prompts are
L2-normalised, averaged and normalised again (``LSegNet.encode_text``).

Numpy only: the scripts check the options before any network is built.
"""
import os
from typing import List, Optional, Sequence

from foundation.labels import read_text_lines

from .labels import CLIP_CONTEXT_LENGTH, label_token_ids

LABEL_SLOT = "{}"
RAW_LABEL = (LABEL_SLOT,)  # the label alone: the official text, and the default


def fill(template: str, label: str) -> str:
    """Args: template: a text holding ``{}``; label: a label. Returns: the template with the label in its place."""
    return template.replace(LABEL_SLOT, label)


def check_templates(templates: Sequence[str], source: str) -> List[str]:
    """Templates as the network takes them.

    Args:
        templates: the templates, in order.
        source: option or file name for the message.

    Returns:
        the templates as a list.

    Raises:
        ValueError: starting with ``source``: no template, a template without ``{}``, one given twice, or one whose
            text with a short label is already longer than CLIP's context.
    """
    if not templates:
        raise ValueError(f"{source}: no prompt template given")
    for position, template in enumerate(templates, start=1):
        if LABEL_SLOT not in template:
            raise ValueError(f"{source}: template {position} {template!r} has no {LABEL_SLOT} where the label goes")
        if templates.index(template) != position - 1:
            raise ValueError(f"{source}: template {position} {template!r} is given twice")
    label_token_ids([fill(template, "x") for template in templates], f"{source} (a template)", CLIP_CONTEXT_LENGTH)
    return list(templates)


def read_prompt_file(path: str, source: str = "--prompts") -> List[str]:
    """Templates from a file: one per line, UTF-8; blank lines and lines starting with ``#`` are skipped.

    Args:
        path: the file; source: the option naming it, for messages.

    Returns:
        the checked templates (:func:`check_templates`).

    Raises:
        ValueError: ``"<source> <path>: ..."`` for a missing, unreadable or non-UTF-8 file and for bad templates.
    """
    where = f"{source} {path}"
    lines = read_text_lines(path, where)
    # A template may hold commas ("a photo of a {}, seen from above"): one per line, not a label list's commas.
    templates = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return check_templates(templates, where)


def templates_from_options(prompt: Optional[str], prompts_file: Optional[str]) -> List[str]:
    """The templates ``--prompt`` / ``--prompts`` give (at most one of them), else :data:`RAW_LABEL`.

    Raises:
        ValueError: naming the option, as :func:`check_templates` / :func:`read_prompt_file`.
    """
    if prompt is not None and prompts_file is not None:
        raise ValueError("--prompt: give --prompt or --prompts, not both")
    if prompts_file is not None:
        if not os.path.isfile(prompts_file) and "{}" in prompts_file:
            raise ValueError(f"--prompts: a file of templates; one template goes to --prompt (got {prompts_file!r})")
        return read_prompt_file(prompts_file)
    if prompt is not None:
        return check_templates([prompt.strip()], "--prompt")
    return list(RAW_LABEL)


__all__ = ["LABEL_SLOT", "RAW_LABEL", "fill", "check_templates", "read_prompt_file", "templates_from_options"]
