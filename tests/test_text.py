"""Text data: embedded tasks, tokenizers, the store, and GLUE / WikiText against loopback.

GLUE and WikiText files are generated here in their real layouts (zip archives of TSV files
with GLUE's headers and columns, the MSR paraphrase text file and GLUE's dev id list, the
WikiText-2 raw zip) by code independent of the parsers, and served over 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from loopback import LoopbackServer
from mfoml.data import text as T
from mfoml.data import tokens as K
from mfoml.data.download import DownloadError
from mfoml.data.formats import DataFormatError
from mfoml.data.glue import CORPORA, GLUE_TASKS
from mfoml.data.store import IntegrityError
from mfoml.data.textsets import load_text_dataset, prepare_text


@pytest.fixture(scope="session")
def textorder_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "textorder"
    prepare_text("textorder", out, n_sentences=300, max_length=40, vocab_size=1500)
    return out


# ------------------------------------------------------------------------------------------
# Embedded tasks
# ------------------------------------------------------------------------------------------


def test_extract_sentences_keeps_prose_only():
    doc = """Compute the shortest path between two nodes of a graph.

    Parameters
    ----------
    G : NetworkX graph

    >>> nx.shortest_path(G, 0, 4)
    [0, 1, 2, 3, 4]

    The ``weight`` argument names an edge attribute that holds the cost. See also this.
    Short one.
    """
    got = T.extract_sentences(doc)
    assert got == [
        "Compute the shortest path between two nodes of a graph.",
        "The weight argument names an edge attribute that holds the cost.",
    ]


def test_embedded_tasks_are_deterministic_balanced_and_documented():
    a = T.make_textsource(per_class=60, test_fraction=0.25, seed=3)
    b = T.make_textsource(per_class=60, test_fraction=0.25, seed=3)
    assert a.train_texts == b.train_texts and a.test_texts == b.test_texts
    assert np.bincount(a.train_labels).tolist() == [45, 45, 45]
    assert np.bincount(a.test_labels).tolist() == [15, 15, 15]
    assert not set(a.train_texts) & set(a.test_texts)
    assert a.class_names == list(T.TEXT_SOURCES)
    for name, prov in a.provenance["sources"].items():
        assert prov["version"] and len(prov["sha256"]) == 64 and prov["n_sentences"] >= 500, name
    c = T.make_textsource(per_class=60, test_fraction=0.25, seed=4)
    assert c.train_texts != a.train_texts


def test_textorder_pairs_are_word_reversals_in_the_same_split():
    s = T.make_textorder(n_sentences=40, test_fraction=0.25, seed=0)
    for texts, labels, pairs in (
        (s.train_texts, s.train_labels, s.train_pairs),
        (s.test_texts, s.test_labels, s.test_pairs),
    ):
        assert np.bincount(labels).tolist() == [len(texts) // 2] * 2
        groups = s.train_groups if texts is s.train_texts else s.test_groups
        for i, j in enumerate(pairs):
            assert pairs[j] == i and labels[i] != labels[j] and groups[i] == groups[j]
            a, b = texts[i].split(), texts[j].split()
            # eight lower-case words from inside a sentence, and the same words reversed
            assert b == a[::-1] and a != b and len(a) == T.ORDER_WINDOW
            assert texts[i] == texts[i].lower() and all(w.isidentifier() or w.isalnum() for w in a)
        assert len(np.unique(groups)) == len(texts) // 2
    train_sents = {min(t, T.reverse_words(t)) for t in s.train_texts}
    test_sents = {min(t, T.reverse_words(t)) for t in s.test_texts}
    assert len(test_sents) == 10 and not train_sents & test_sents
    assert not set(s.train_groups.tolist()) & set(s.test_groups.tolist())


def test_reverse_words_keeps_punctuation_in_place():
    assert T.reverse_words("Call fit(X, y) first.") == "first y ( X , fit ) Call ."
    assert T.reverse_words(T.reverse_words("a b, c d.")) == "a b , c d ."


def test_textorder_no_single_token_position_predicts_the_label(textorder_dir):
    """The reversal left no positional shortcut: for every token position, a logistic
    regression on that position's token alone (one-hot) is at chance on the test split.

    Before the fix, position 0 was "." in every reversed sentence (and a capital in every
    original), so this one position gave the label."""
    from scipy.stats import binomtest
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    d = load_text_dataset(textorder_dir)
    n_test = len(d.y_test)
    worst = 0.0
    for pos in range(d.x_train.shape[1]):
        enc = OneHotEncoder(handle_unknown="ignore").fit(d.x_train[:, pos : pos + 1])
        clf = LogisticRegression(max_iter=2000).fit(
            enc.transform(d.x_train[:, pos : pos + 1]), d.y_train
        )
        acc = float(np.mean(clf.predict(enc.transform(d.x_test[:, pos : pos + 1])) == d.y_test))
        worst = max(worst, acc)
        # a one-sided binomial test against chance at each position (Bonferroni over positions)
        p = binomtest(round(acc * n_test), n_test, 0.5, alternative="greater").pvalue
        assert p > 0.05 / d.x_train.shape[1], (pos, acc)
    assert worst < 0.6, worst


# ------------------------------------------------------------------------------------------
# Tokenizers
# ------------------------------------------------------------------------------------------


def test_tokenizer_learns_from_the_training_split_only():
    kind = "bpe"
    s = T.make_textsource(per_class=80, seed=1)
    tok = K.train_tokenizer(s.train_texts, kind=kind, vocab_size=50_000)
    again = K.train_tokenizer(s.train_texts, kind=kind, vocab_size=50_000)
    assert tok.to_str() == again.to_str()  # reproducible ids
    train_text = "\n".join(s.train_texts)
    vocab = set(tok.get_vocab()) - set(K.SPECIAL_TOKENS)
    assert all(p in train_text for p in vocab)  # every entry comes from the training text
    train_words = {w for t in s.train_texts for w in T.word_tokens(t)}
    test_only = sorted(
        w
        for t in s.test_texts
        for w in T.word_tokens(t)
        if w not in train_words and w not in train_text
    )
    assert len(test_only) >= 5
    for word in test_only:
        assert tok.token_to_id(word) is None
        assert tok.encode(word, add_special_tokens=False).tokens != [word]
    assert K.special_ids(tok) == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    # a character never seen in training is unknown
    assert tok.encode("graph \u2603", add_special_tokens=False).ids[-1] == 1


def test_encode_pads_truncates_and_builds_pairs():
    tok = K.train_tokenizer(["alpha beta gamma delta", "beta gamma"], vocab_size=100)
    ids, mask, cut = K.encode_texts(tok, ["alpha beta", ("beta", "gamma delta alpha beta")], 6)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    a, b = tok.token_to_id("alpha"), tok.token_to_id("beta")
    assert ids.dtype == np.int32 and mask.dtype == np.uint8
    assert ids[0].tolist() == [cls, a, b, sep, 0, 0] and mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    assert ids[1, 0] == cls and (ids[1] == sep).sum() == 2 and mask[1].all()
    assert cut.tolist() == [False, True]


# ------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------


def test_prepared_text_dataset_round_trip_and_integrity(textorder_dir, tmp_path):
    d = load_text_dataset(textorder_dir)
    meta = d.meta
    assert meta["kind"] == "text" and meta["input_shape"] == [40]
    assert d.x_train.dtype == np.int32 and d.x_train.shape == (meta["n_train"], 40)
    assert np.array_equal(d.mask_train != 0, d.x_train != 0)
    assert (d.x_train[:, 0] == 2).all()  # [CLS]
    counts = meta["text"]["class_counts"]
    assert counts["train"][0] == counts["train"][1] and counts["test"][0] == counts["test"][1]
    assert set(d.pairs) == {"train", "test"}
    # the partner holds the same tokens in another order
    for split in ("train", "test"):
        x, p = getattr(d, f"x_{split}"), d.pairs[split]
        assert np.array_equal(np.sort(x, axis=1), np.sort(x[p], axis=1))
        assert (x != x[p]).any(axis=1).all()
    tok = d.tokenizer()
    assert tok.get_vocab_size() == meta["tokenizer"]["vocab_size"]
    # tampering is detected
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in textorder_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    tj = json.loads((copy / "tokenizer.json").read_text())
    tj["model"]["vocab"]["zzz"] = 99999
    (copy / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(IntegrityError, match="tokenizer.json"):
        load_text_dataset(copy)
    np.save(copy / "mask_test.npy", np.zeros((2, 2), np.uint8))
    with pytest.raises(IntegrityError, match="mask_test.npy"):
        load_text_dataset(copy)


# ------------------------------------------------------------------------------------------
# GLUE and WikiText in their real layouts, over loopback
# ------------------------------------------------------------------------------------------

COLA = [
    ("gj04", 1, "", "Our friends won't buy this analysis."),
    ("gj04", 0, "*", "They drank the pub."),
]
SST2 = [("hide new secretions from the parental units ", 0), ("a gorgeous , witty film ", 1)]
RTE = [
    ("A man plays.", "Someone plays.", "entailment"),
    ("It rains.", "It is dry.", "not_entailment"),
]


def zip_bytes(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def write_glue(directory: Path) -> dict[str, list]:
    """GLUE's files for cola, sst2, rte, mrpc; returns the expected (text, label) lists."""
    rows = lambda lines: "".join(line + "\n" for line in lines)  # noqa: E731
    cola = [f"{s}\t{y}\t{m}\t{t}" for s, y, m, t in COLA]
    (directory / "CoLA.zip").write_bytes(
        zip_bytes(
            {
                "CoLA/train.tsv": rows(cola * 3),
                "CoLA/dev.tsv": rows(cola),
                "CoLA/test.tsv": rows(["index\tsentence", "0\tA test."]),
            }
        )
    )
    sst = ["sentence\tlabel"] + [f"{t}\t{y}" for t, y in SST2]
    (directory / "SST-2.zip").write_bytes(
        zip_bytes({"SST-2/train.tsv": rows(sst + sst[1:]), "SST-2/dev.tsv": rows(sst)})
    )
    rte = ["index\tsentence1\tsentence2\tlabel"] + [
        f"{i}\t{a}\t{b}\t{y}" for i, (a, b, y) in enumerate(RTE)
    ]
    (directory / "RTE.zip").write_bytes(
        zip_bytes({"RTE/train.tsv": rows(rte), "RTE/dev.tsv": rows(rte)})
    )
    msr = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    pairs = [("1", "11", "12", "He came.", "He arrived."), ("0", "21", "22", "Cats.", "Dogs.")]
    pairs += [("1", "31", "32", "It is big.", "It is large."), ("0", "41", "42", "Up.", "Down.")]
    msr += ["\t".join(p) for p in pairs]
    (directory / "msr_paraphrase_train.txt").write_text(rows(msr), encoding="utf-8")
    (directory / "mrpc_dev_ids.tsv").write_text("31\t32\n", encoding="utf-8")
    return {
        "cola": ([t for *_, t in COLA] * 3, [y for _, y, _, _ in COLA] * 3),
        "sst2": ([t.strip() for t, _ in SST2 * 2], [y for _, y in SST2 * 2]),
        "rte": ([(a, b) for a, b, _ in RTE], [0, 1]),
        "mrpc": ([(p[3], p[4]) for p in pairs if p[1] != "31"], [1, 0, 0]),
    }


def sha256s(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.fixture
def glue_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    expected = write_glue(served)
    return served, expected


@pytest.mark.parametrize("task", ["cola", "sst2", "rte", "mrpc"])
def test_glue_download_parse_and_store(tmp_path, glue_server, task):
    served, expected = glue_server
    out = tmp_path / "data" / f"glue-{task}"
    with LoopbackServer(served) as srv:
        meta = prepare_text(
            f"glue-{task}",
            out,
            mirror=srv.base_url,
            checksums=sha256s(served),
            max_length=16,
            vocab_size=200,
        )
        assert sorted(srv.requests) == sorted(f"/{f.name}" for f in GLUE_TASKS[task].files)
    d = load_text_dataset(out)
    texts, labels = expected[task]
    assert d.y_train.tolist() == labels and meta["class_names"] == list(
        GLUE_TASKS[task].class_names
    )
    tok = d.tokenizer()
    got = [tok.decode([i for i in row if i > 4]) for row in d.x_train]
    want = [" ".join(t) if isinstance(t, tuple) else t for t in texts]
    assert [g.replace(" ", "") for g in got] == [w.replace(" ", "") for w in want]
    if GLUE_TASKS[task].pairs:
        assert ((d.x_train == 3).sum(1) == 2).all()  # [CLS] a [SEP] b [SEP]
    assert [f["file"] for f in meta["raw_files"]] == [f.name for f in GLUE_TASKS[task].files]


def test_glue_truncated_and_corrupted_archives_are_never_trusted(tmp_path, glue_server):
    served, _ = glue_server
    good = sha256s(served)
    out, dl = tmp_path / "data" / "glue-cola", tmp_path / "dl"
    kw = {"download_dir": dl, "max_length": 16, "vocab_size": 200}
    size = (served / "CoLA.zip").stat().st_size
    with LoopbackServer(served, cut_transfers={"CoLA.zip": size // 2}) as srv:
        with pytest.raises(DownloadError, match="truncated"):
            prepare_text("glue-cola", out, mirror=srv.base_url, checksums=good, **kw)
    assert not (out / "meta.json").exists() and not any((dl / "glue-cola").iterdir())
    data = bytearray((served / "CoLA.zip").read_bytes())
    with zipfile.ZipFile(served / "CoLA.zip") as zf:
        info = zf.getinfo("CoLA/train.tsv")
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    (served / "CoLA.zip").write_bytes(bytes(data))
    with LoopbackServer(served) as srv:
        with pytest.raises(DownloadError, match="checksum mismatch"):
            prepare_text("glue-cola", out, mirror=srv.base_url, checksums=good, **kw)
        assert not any((dl / "glue-cola").iterdir())
        # announced with the corrupted file's own checksum: the parser rejects it, file removed
        with pytest.raises(DataFormatError, match="CoLA.zip"):
            prepare_text("glue-cola", out, mirror=srv.base_url, checksums=sha256s(served), **kw)
    assert not any((dl / "glue-cola").iterdir()) and not (out / "meta.json").exists()


def test_glue_malformed_rows_name_file_and_line(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    bad = "sentence\tlabel\ngood film\t1\nno label here\n"
    (served / "SST-2.zip").write_bytes(
        zip_bytes({"SST-2/train.tsv": bad, "SST-2/dev.tsv": "sentence\tlabel\nok\t0\n"})
    )
    with LoopbackServer(served) as srv:
        with pytest.raises(DataFormatError, match=r"SST-2/train.tsv, line 3"):
            prepare_text(
                "glue-sst2",
                tmp_path / "out",
                mirror=srv.base_url,
                checksums=sha256s(served),
            )


def test_wikitext_corpus_download_and_blocks(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    train = (
        " \n = Valkyria Chronicles = \n \n The game began in 2010 . \n It sold well in Japan . \n"
    )
    test = " = Other = \n A test paragraph follows here . \n"
    (served / "wikitext-2-raw-v1.zip").write_bytes(
        zip_bytes(
            {
                "wikitext-2-raw/wiki.train.raw": train * 3,
                "wikitext-2-raw/wiki.valid.raw": test,
                "wikitext-2-raw/wiki.test.raw": test,
            }
        )
    )
    out = tmp_path / "data" / "wikitext2"
    with LoopbackServer(served) as srv:
        meta = prepare_text(
            "wikitext2",
            out,
            mirror=srv.base_url,
            checksums=sha256s(served),
            max_length=8,
            vocab_size=120,
        )
    assert meta["task"] == "mlm" and meta["n_classes"] is None
    d = load_text_dataset(out)
    tok = d.tokenizer()
    assert (d.x_train[:, 0] == 2).all() and ((d.x_train == 3).sum(1) == 1).all()
    stream = [i for row in d.x_train for i in row if i > 4]
    words = tok.decode(stream).replace(" ", "")
    assert words == ("The game began in 2010 . It sold well in Japan ." * 3).replace(" ", "")
    assert "Valkyria" not in tok.decode(stream)
    assert meta["text"]["n_tokens"]["train"] == len(stream)
    assert list(CORPORA) == ["wikitext2"]
    with LoopbackServer(served, cut_transfers={"wikitext-2-raw-v1.zip": 40}) as srv:
        with pytest.raises(DownloadError, match="truncated"):
            prepare_text(
                "wikitext2",
                tmp_path / "data2" / "wikitext2",
                mirror=srv.base_url,
                checksums=sha256s(served),
            )


def test_official_sources_are_pinned():
    for task, spec in GLUE_TASKS.items():
        for f in spec.files:
            assert f.url.startswith("https://") and f.url.endswith(f.name), task
            assert len(f.sha256) == 64 and f.size > 0
    assert CORPORA["wikitext2"].sha256.startswith("ef7edb56")
