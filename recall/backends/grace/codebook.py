"""GRACE's codebook (METHODS.md §3.2): keys (the wrapped layer's input at an edit's last prompt token),
values (what replaces the layer's output there), ε radii and labels, with the insertion rule of the
GRACE repo and EasyEdit: a new entry when the balls would not overlap; on overlap with another label a
new entry and a split of both radii; on overlap with the same label the old ball grows to cover the key
("coverage"). Labels are compared exactly (the target's token ids), not by EasyEdit's mean of ids.

The codebook is a pure function of the ordered edits it was built from (`build`): forgetting an edit is
rebuilding without it, which also undoes any split or growth it caused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SPLIT_GAP = 1e-5  # the old radius shrinks to d/2 - SPLIT_GAP so the two balls never share a point


@dataclass(frozen=True)
class Entry:
    """One edit as GRACE learned it: key (d_in,), value (d_out,), label (the target's token ids)."""

    edit_id: str
    key: torch.Tensor
    value: torch.Tensor
    label: tuple[int, ...]


@dataclass
class Codebook:
    """Entries that own a ball, and which ball each edit ended up in (`owner`)."""

    eps_init: float
    keys: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))  # (n, d_in)
    values: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))  # (n, d_out)
    radii: list[float] = field(default_factory=list)
    labels: list[tuple[int, ...]] = field(default_factory=list)
    edit_ids: list[str] = field(default_factory=list)  # the edit that created each entry
    owner: dict[str, int] = field(default_factory=dict)  # edit_id -> entry index whose ball holds it

    def __len__(self) -> int:
        return len(self.edit_ids)

    def insert(self, entry: Entry) -> None:
        if not self.edit_ids:
            self._append(entry, self.eps_init)
            return
        distances = torch.cdist(entry.key[None].float(), self.keys.float())[0]  # (n,)
        nearest = int(distances.argmin())
        d = float(distances[nearest])
        if d > self.eps_init + self.radii[nearest]:
            self._append(entry, self.eps_init)
        elif entry.label != self.labels[nearest]:
            self.radii[nearest] = d / 2 - SPLIT_GAP
            self._append(entry, d / 2)
        else:
            self.radii[nearest] = max(self.radii[nearest], d)  # coverage: the old ball grows to the key
            self.owner[entry.edit_id] = nearest

    def lookup(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(nearest entry index (m,), its distance (m,)) for queries (m, d_in); -1 where no ball holds
        the query (or the codebook is empty)."""
        if not self.edit_ids:
            return torch.full((len(queries),), -1), torch.full((len(queries),), float("inf"))
        distances = torch.cdist(queries.float(), self.keys.to(queries.device).float())  # (m, n)
        best, index = distances.min(dim=1)
        radii = torch.tensor(self.radii, device=queries.device)
        return torch.where(best <= radii[index], index, torch.full_like(index, -1)), best

    def _append(self, entry: Entry, radius: float) -> None:
        key, value = entry.key.detach()[None], entry.value.detach()[None]
        self.keys = key.clone() if not self.edit_ids else torch.cat([self.keys, key])
        self.values = value.clone() if not self.edit_ids else torch.cat([self.values, value])
        self.radii.append(radius)
        self.labels.append(entry.label)
        self.edit_ids.append(entry.edit_id)
        self.owner[entry.edit_id] = len(self.edit_ids) - 1


def build(entries: list[Entry], eps_init: float) -> Codebook:
    """The codebook GRACE makes from these edits, inserted in this order."""
    codebook = Codebook(eps_init)
    for entry in entries:
        codebook.insert(entry)
    return codebook
