"""English example sentences from WordNet 3.0's database files, with their labels.

WordNet (Princeton University; a permissive licence of its own) glosses each
synset with a definition and, for many, example sentences written by its
lexicographers: "the pilot reported two kills during the mission". The Debian
package `wordnet-base` (`apt-get install wordnet-base`) installs the database in
`DEFAULT_WORDNET_DIR`; its four `data.{noun,verb,adj,adv}` files hold 48,339
quoted examples. Each example comes with its synset's lexicographer file
(`noun.artifact`, `verb.motion`, ... 45 of them), a label that needs no
annotation beyond WordNet's own.

The format (wndb(5WN)): a line per synset, `offset lex_filenum ss_type w_cnt
word lex_id ... | gloss`; lines starting with two spaces are the licence. In
the gloss, examples are the double-quoted parts after the definition.
"""

import os
import re
from typing import NamedTuple

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
INSTALL_COMMAND = "apt-get install wordnet-base"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
# lexnames(5WN): the lexicographer files, by the number data files store.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
_QUOTED = re.compile(r'"([^"]+)"')
_SYNTACTIC_MARKER = re.compile(r"\([a-z]+\)$")  # an adjective's position: "able(a)"


class Example(NamedTuple):
    """One example sentence: its text, its synset's lexicographer file, synset and words."""

    text: str
    lexname: str  # e.g. "noun.act"
    synset: str  # "<offset>-<pos letter>", e.g. "00217593-n"
    words: tuple[str, ...] = ()  # the synset's words, e.g. ("kill", "putting_to_death")

    def headword(self) -> str:
        """The synset's word the example illustrates: the first of its words found in
        the text (case-insensitive, "_" read as a space), else its first word."""
        text = self.text.lower()
        for word in self.words:
            if word.replace("_", " ").lower() in text:
                return word.replace("_", " ")
        return self.words[0].replace("_", " ") if self.words else ""


class WordNetFormatError(ValueError):
    """A line that is not a WordNet data line; the message names file and line."""


def parse_data_line(line: str, where: str = "<line>") -> list[Example]:
    """The examples of one synset line of a `data.POS` file ([] for none).

    Raises:
      WordNetFormatError: no gloss separator, a non-numeric offset or lexicographer
        file number, a number outside `LEXNAMES`, or no hexadecimal word count.
    """
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
        raise WordNetFormatError(
            f"{where}: not a WordNet data line ('offset lex_filenum ss_type ... | gloss'): "
            f"{line[:60]!r}")
    lex = int(fields[1])
    if lex >= len(LEXNAMES):
        raise WordNetFormatError(f"{where}: lexicographer file {lex} is outside 0..{len(LEXNAMES) - 1}")
    synset = f"{fields[0]}-{fields[2]}"
    try:  # w_cnt (two hex digits), then a (word, lex_id) pair per word
        count = int(fields[3], 16)
    except (IndexError, ValueError):
        raise WordNetFormatError(f"{where}: no word count (two hex digits) after the synset "
                                 f"type: {line[:60]!r}") from None
    words = tuple(_SYNTACTIC_MARKER.sub("", w) for w in fields[4:4 + 2 * count:2])
    return [Example(text.strip(), LEXNAMES[lex], synset, words)
            for text in _QUOTED.findall(gloss) if text.strip()]


def wordnet_examples(directory: str | os.PathLike | None = None,
                     min_words: int = 1) -> list[Example]:
    """Every example sentence of the WordNet database in `directory`, in file order
    (noun, verb, adj, adv; by offset within each).

    Args:
      directory: holds `data.noun`, `data.verb`, `data.adj`, `data.adv`; None means
        `DEFAULT_WORDNET_DIR`, where the Debian package installs them.
      min_words: keep examples of at least this many words ("the pilot reported
        two kills" has five; 4 leaves sentence-like examples, not bare phrases).

    Raises:
      FileNotFoundError: a data file is missing; one line naming the directory,
        the file and the package that installs it.
      WordNetFormatError: a malformed line (see `parse_data_line`).
      ValueError: min_words < 1.
    """
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
        raise ValueError(f"min_words={min_words!r} must be an integer >= 1")
    directory = os.fspath(directory) if directory is not None else DEFAULT_WORDNET_DIR
    paths = [os.path.join(directory, f"data.{pos}") for pos in PARTS_OF_SPEECH]
    for path in paths:  # all looked for before any is read
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"WordNet: {directory} has no {os.path.basename(path)}; install the database "
                f"with `{INSTALL_COMMAND}` (Debian, Ubuntu), or pass a directory holding "
                f"WordNet 3.0's data.noun, data.verb, data.adj and data.adv.")
    examples = []
    for path in paths:
        # WordNet's files are Latin-1 (a few glosses hold accented letters).
        with open(path, encoding="latin-1") as f:
            for number, line in enumerate(f, 1):
                if line.startswith("  ") or not line.strip():  # the licence header
                    continue
                examples += [e for e in parse_data_line(line, f"{path}:{number}")
                             if len(e.text.split()) >= min_words]
    return examples
