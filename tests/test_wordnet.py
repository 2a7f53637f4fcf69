"""Tests of the WordNet example reader on data files written here (and on the Debian
package's database where it is installed)."""

import os

import pytest

from tasd_jax.data import wordnet

LICENCE = "  1 This software and database is being provided to you, the LICENSEE...\n"
NOUNS = (
    LICENCE
    + '00217593 04 n 01 kill 1 002 @ 00217014 n 0000 | the destruction of an enemy plane; '
      '"the pilot reported two kills during the mission"  \n'
    + "00217499 04 n 01 disaster 0 001 @ 00217014 n 0000 | an act that has disastrous consequences  \n"
    + '02084071 05 n 02 dog 0 domestic_dog 0 000 | a member of the genus Canis; "the dog barked all night"; '
      '"a dog"  \n'
)
VERBS = '01835496 38 v 01 travel 0 000 | change location; "How fast does your new car go?"  \n'
ADJS = '00001740 00 a 01 able 0 000 | having the necessary means; "able to swim"  \n'


def write_wordnet(directory, nouns=NOUNS) -> None:
    os.makedirs(directory, exist_ok=True)
    for pos, text in (("noun", nouns), ("verb", VERBS), ("adj", ADJS), ("adv", LICENCE)):
        (directory / f"data.{pos}").write_text(text, encoding="latin-1")


def test_examples_come_with_their_lexicographer_file_in_file_order(tmp_path):
    write_wordnet(tmp_path)
    got = wordnet.wordnet_examples(tmp_path)
    assert got == [
        wordnet.Example("the pilot reported two kills during the mission", "noun.act", "00217593-n",
                        ("kill",)),
        wordnet.Example("the dog barked all night", "noun.animal", "02084071-n",
                        ("dog", "domestic_dog")),
        wordnet.Example("a dog", "noun.animal", "02084071-n", ("dog", "domestic_dog")),
        wordnet.Example("How fast does your new car go?", "verb.motion", "01835496-v",
                        ("travel",)),
        wordnet.Example("able to swim", "adj.all", "00001740-a", ("able",)),
    ]
    # The word each example illustrates: the synset's word found in it, else its first.
    assert [e.headword() for e in got] == ["kill", "dog", "dog", "travel", "able"]
    assert wordnet.Example("it is a domestic dog", "noun.animal", "x", ("canine", "domestic_dog")
                           ).headword() == "domestic dog"
    assert [e.text for e in wordnet.wordnet_examples(tmp_path, min_words=4)] == [
        "the pilot reported two kills during the mission", "the dog barked all night",
        "How fast does your new car go?"]


def test_the_lexicographer_files_are_the_45_of_lexnames():
    assert len(wordnet.LEXNAMES) == 45 == len(set(wordnet.LEXNAMES))
    assert (wordnet.LEXNAMES[4], wordnet.LEXNAMES[38], wordnet.LEXNAMES[44]) == (
        "noun.act", "verb.motion", "adj.ppl")


def test_a_missing_file_fails_in_one_line_naming_the_package(tmp_path):
    write_wordnet(tmp_path)
    os.remove(tmp_path / "data.adv")
    with pytest.raises(FileNotFoundError) as err:
        wordnet.wordnet_examples(tmp_path)
    assert str(err.value).startswith(f"WordNet: {tmp_path} has no data.adv; install")
    assert "`apt-get install wordnet-base`" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("line, message", [
    ("no separator here\n", "not a WordNet data line"),
    ("0021 xx n 01 kill 1 | gloss\n", "not a WordNet data line"),
    ("00217593 45 n 01 kill 1 000 | gloss\n", r"lexicographer file 45 is outside 0\.\.44"),
    ("00217593 04 n kill 1 000 | gloss\n", r"no word count \(two hex digits\)"),
])
def test_a_malformed_line_is_named_with_its_file_and_number(tmp_path, line, message):
    write_wordnet(tmp_path, nouns=NOUNS + line)
    with pytest.raises(wordnet.WordNetFormatError, match=message) as err:
        wordnet.wordnet_examples(tmp_path)
    assert f"{tmp_path / 'data.noun'}:5" in str(err.value)


def test_min_words_must_be_a_positive_integer(tmp_path):
    with pytest.raises(ValueError, match="min_words=0 must be an integer >= 1"):
        wordnet.wordnet_examples(tmp_path, min_words=0)


@pytest.mark.skipif(not os.path.isdir(wordnet.DEFAULT_WORDNET_DIR),
                    reason="needs the Debian package: apt-get install wordnet-base")
def test_the_debian_database_has_wordnets_48339_examples():
    examples = wordnet.wordnet_examples()
    assert len(examples) == 48_339
    assert {e.lexname for e in examples} <= set(wordnet.LEXNAMES)
    assert all(e.words for e in examples)
