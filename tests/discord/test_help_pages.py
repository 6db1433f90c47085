"""/help packing: however many commands there are, each message stays within Discord's embed limits."""

from __future__ import annotations

from cogs.meta import help_pages


def test_long_help_is_split_into_messages_each_within_the_6000_character_total() -> None:
    entries = [(f"/command-{i}", f"Option line {i}. " + "x" * 700) for i in range(40)]
    pages = help_pages(entries)
    assert len(pages) > 1
    shown = [f.name for page in pages for embed in page for f in embed.fields]
    assert shown == [title for title, _ in entries]  # nothing lost, order kept
    for page in pages:
        assert 1 <= len(page) <= 10
        assert sum(len(embed) for embed in page) <= 6000
        assert all(len(embed.fields) <= 25 for embed in page)


def test_many_short_entries_respect_25_fields_per_embed() -> None:
    entries = [(f"/c{i}", "short") for i in range(60)]
    pages = help_pages(entries)
    assert [len(e.fields) for page in pages for e in page] == [25, 25, 10]
    assert len(pages) == 1
