"""Knowledge bases and the knowledge-qa / customer-service recipes: chunking, incremental ingest into
LanceDB, recall@k on a question set built from the test's own documents, cited answers, "I don't
know", and per-session memory with handoff, on the embedded MiniLM and gemma-3-270m models."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from omniforge.config import load_settings
from omniforge.errors import InvalidRequestError, NotFoundError
from omniforge.evals.retrieval import Question, score
from omniforge.pipelines import (  # noqa: F401  knowledge and sessions register ingest, retrieve, answer, support
    ArtifactStore,
    PipelineRunner,
    PipelineStore,
    Recipe,
    find_recipe,
    knowledge,
    load_recipe,
    sessions,
)
from omniforge.pipelines.knowledge import DONT_KNOW, KnowledgeBase, chunk_text, default_name
from omniforge.pipelines.sessions import HANDOFF, SessionStore
from omniforge.service import Service
from tests.unit.test_pipelines import _docx

# -- documents the tests build ---------------------------------------------------------------------


def _html(title: str, paragraphs: list[str]) -> str:
    return (f"<html><head><title>{title}</title><style>p {{color: red}}</style></head><body><h1>{title}</h1>"
            + "".join(f"<p>{p}</p>" for p in paragraphs) + "</body></html>")


DOCS: dict[str, list[str]] = {  # file -> paragraphs, each file on its own topic
    "geology/volcano.md": [
        ("Mount Kessel is a stratovolcano in the northern range. It last erupted in 1887, when ash fell on three "
        "villages and the river changed its course."),
        ("The crater holds an acidic turquoise lake about four hundred metres wide. Its water is warm all year "
        "because gas still rises from vents on the lake floor."),
        ("Hikers need a permit from the park office to climb above two thousand metres, and the summit trail "
        "closes from November to April because of snow."),
    ],
    "kitchen/sourdough.txt": [
        ("A sourdough starter is a mix of flour and water full of wild yeast. Feed it with equal weights of flour "
        "and water the night before you bake."),
        "The dough rests for twelve hours in a cool room so that the bread develops a sour taste and an open crumb.",
        ("Bake the loaf at 240 degrees Celsius in a covered cast iron pot for twenty minutes, then uncover it for "
        "twenty more to brown the crust."),
    ],
    "clubs/chess.html": [
        "The Riverside Chess Club was founded in 1952 by four railway workers who played at lunch.",
        ("The club meets every Thursday evening in the library basement. Beginners get a free lesson from a "
        "club master before the games start."),
        "Each spring the club runs a rapid tournament with a time control of fifteen minutes per player.",
    ],
    "farm/bees.docx": [
        "A honey bee colony has one queen, thousands of female workers and a few hundred male drones.",
        ("Beekeepers check the hive every week in summer and add a box called a super when the bees need more "
        "room to store honey."),
        "Honey is harvested in late summer. The frames are uncapped with a hot knife and spun in an extractor.",
    ],
    "travel/railway.md": [
        ("The Alder Valley railway climbs from the lake to the pass on a narrow gauge track with a cog rail in "
        "the steepest section."),
        ("Trains run every forty minutes in summer. The trip to the top takes fifty-five minutes and passes "
        "through six tunnels."),
        ("The line opened in 1903 and was electrified in 1931; the old steam locomotive now stands in the "
        "station museum."),
    ],
    "science/tides.txt": [
        ("Tides are caused mostly by the gravity of the Moon pulling on the oceans, with a smaller pull from "
        "the Sun."),
        ("Most coasts have two high tides and two low tides every lunar day of about twenty-four hours and "
        "fifty minutes."),
        "Spring tides, with the largest range, happen at new moon and full moon, when the Sun and Moon line up.",
    ],
    "music/violin.md": [
        "A violin body is carved from spruce for the top and maple for the back, sides and neck.",
        "The maker varnishes the instrument with many thin coats of oil varnish and lets each coat dry in sunlight.",
        ("A violin has four strings tuned in fifths: G, D, A and E. The bow is strung with horsehair rubbed "
        "with rosin."),
    ],
    "space/comet.html": [
        "Comet Halden was discovered in 2019 by an amateur astronomer using a small telescope in her garden.",
        "Its orbit takes seventy-two years, so it will next pass close to the Sun in 2091.",
        "The comet's tail, made of dust and ice pushed away by the solar wind, stretched for ten million kilometres.",
    ],
}

QUESTIONS: list[tuple[str, str, str]] = [  # paraphrased questions about the documents above: the file that
    # answers, and a word of the passage that does
    ("When was the last eruption of Mount Kessel?", "geology/volcano.md", "1887"),
    ("Why is the crater lake warm?", "geology/volcano.md", "vents"),
    ("How should I feed my sourdough starter?", "kitchen/sourdough.txt", "equal weights"),
    ("At what temperature is the loaf baked?", "kitchen/sourdough.txt", "240"),
    ("Who founded the Riverside Chess Club?", "clubs/chess.html", "railway workers"),
    ("What day does the chess club meet?", "clubs/chess.html", "Thursday"),
    ("How many queens does a bee colony have?", "farm/bees.docx", "one queen"),
    ("How is honey taken out of the frames?", "farm/bees.docx", "extractor"),
    ("How often do trains run on the Alder Valley railway?", "travel/railway.md", "forty minutes"),
    ("When was the railway electrified?", "travel/railway.md", "1931"),
    ("What causes the tides?", "science/tides.txt", "gravity"),
    ("When do spring tides happen?", "science/tides.txt", "full moon"),
    ("What wood is a violin made of?", "music/violin.md", "spruce"),
    ("How are violin strings tuned?", "music/violin.md", "fifths"),
    ("Who discovered Comet Halden?", "space/comet.html", "amateur astronomer"),
    ("When will the comet return?", "space/comet.html", "2091"),
]

UNRELATED = ["What is the capital of Mongolia?", "Who won the football world cup in 1998?",
             "How do I change the oil in my car?"]


def _write(folder: Path, rel: str, paragraphs: list[str]) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if rel.endswith(".docx"):
        path.write_bytes(_docx(paragraphs))
    elif rel.endswith(".html"):
        path.write_text(_html(Path(rel).stem.title(), paragraphs))
    else:
        path.write_text("\n\n".join(paragraphs) + "\n")


def _library(root: Path) -> Path:
    folder = root / "library"
    for rel, paragraphs in DOCS.items():
        _write(folder, rel, paragraphs)
    (folder / ".hidden.md").write_text("secret notes that are not ingested")
    (folder / "photo.png").write_bytes(b"\x89PNG not a document")
    return folder


FAQ = {
    "account.md": [("To reset your password, open Settings, choose Account and click Reset password. A link is "
                   "emailed to you and expires after 30 minutes.")],
    "refunds.md": [("Refunds are issued within 14 days of purchase. Send your order number to support and the money "
                   "returns to the original card within five business days.")],
    "shipping.txt": [("Orders ship from our warehouse in Leeds within two working days. Delivery in the UK takes "
                     "three to five days and costs 4 pounds, free above 50 pounds.")],
    "hours.txt": ["Our support team answers chat and phone from 8 am to 6 pm, Monday to Friday."],
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    from tests.conftest import make_home

    svc = Service(load_settings(home=make_home(tmp_path_factory.mktemp("knowledge")), threads=1))
    yield svc
    svc.close()


def _words(text: str) -> int:
    return len(text.split())


RECIPES = Path(knowledge.__file__).parent / "recipes"


def _recipe(name: str) -> Recipe:
    """A built-in recipe; while its step kinds are not imported by the package it ships as NAME.yaml.pending."""
    pending = RECIPES / f"{name}.yaml.pending"
    return load_recipe(pending) if pending.is_file() else find_recipe(name)


# -- fast: chunking, session store, recipes --------------------------------------------------------
def test_text_without_breaks_is_cut_to_the_budget() -> None:
    count = lambda s: len(s) // 4 + 1  # noqa: E731  # about four characters a token
    text = "A short intro.\n\n" + "Q" * 3000 + " and a tail\n\n" + "| cell | cell |\n" * 40
    chunks = chunk_text(text, count, budget=100, overlap=20)
    assert all(count(c) <= 100 for c in chunks) and len(chunks) >= 9
    assert "".join(chunks).count("Q") == 3000  # nothing lost (no overlap inside an unbroken word)


def test_chunks_keep_paragraphs_within_budget_with_overlap() -> None:
    paragraphs = [" ".join(f"p{i}w{j}." if j % 6 == 5 else f"p{i}w{j}" for j in range(30)) for i in range(6)]
    chunks = chunk_text("\n\n".join(paragraphs), _words, budget=70, overlap=12)
    assert all(_words(c) <= 70 for c in chunks)
    assert len(chunks) >= 3
    assert all(p in "".join(chunks) for p in paragraphs)  # every paragraph whole in some chunk
    for before, after in itertools.pairwise(chunks):  # the next chunk opens with the last sentences of this one
        opening = after.split("\n\n")[0]
        assert before.endswith(opening) and 0 < _words(opening) <= 12
    long = " ".join(f"word{j}" for j in range(250))  # one paragraph with no sentence ends
    pieces = chunk_text(long, _words, budget=100, overlap=10)
    assert all(_words(p) <= 100 for p in pieces) and " ".join(pieces).split()[-1] == "word249"
    assert chunk_text("", _words) == [] and chunk_text("one short line", _words) == ["one short line"]


def test_session_store_keeps_sessions_apart_and_each_run_once(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions.db")
    first = store.add("alice", "Hi, I'm Alice", "Hello Alice!", False, run_id="run_1")
    again = store.add("alice", "Hi, I'm Alice", "a different reply", False, run_id="run_1")  # a resumed run
    store.add("bob", "Hi", "Hello!", False)
    store.add("alice", "Bye", "Goodbye", True)
    assert again == first
    assert [(t.seq, t.user, t.handoff) for t in store.turns("alice")] == [(1, "Hi, I'm Alice", False), (2, "Bye", True)]
    assert [t.reply for t in SessionStore(tmp_path / "sessions.db").turns("bob")] == ["Hello!"]  # on disk
    assert store.clear("alice") == 2 and store.turns("alice") == []
    with pytest.raises(InvalidRequestError, match="session"):
        store.turns("no spaces allowed")


def test_builtin_recipes_load() -> None:
    qa, cs = _recipe("knowledge-qa"), _recipe("customer-service")
    assert [s.uses for s in qa.order] == ["ingest", "retrieve", "answer"]
    assert [s.uses for s in cs.order] == ["ingest", "retrieve", "support"]
    assert qa.inputs["folder"].required and not qa.inputs["name"].required
    assert cs.inputs["session"].default == "default"


def test_knowledge_base_names_are_checked(tmp_path: Path) -> None:
    svc = Service(load_settings(home=tmp_path / "home", threads=1))
    try:
        with pytest.raises(InvalidRequestError, match="name"):
            KnowledgeBase(svc, "../escape")
        with pytest.raises(NotFoundError, match="ingest a folder"):
            KnowledgeBase(svc, "empty").search("anything")
        with pytest.raises(InvalidRequestError, match="no folder at"):
            KnowledgeBase(svc, "kb").ingest(tmp_path / "missing")
    finally:
        svc.close()
    assert default_name(tmp_path / "My Docs") != default_name(tmp_path / "other" / "My Docs")
    assert default_name(tmp_path / "My Docs").startswith("My-Docs-")


# -- on the embedding model ------------------------------------------------------------------------
@pytest.mark.slow
def test_ingest_is_incremental(service: Service, tmp_path: Path) -> None:
    folder = _library(tmp_path)
    kb = KnowledgeBase(service, "incremental")
    service.embed("load the model before timing")
    import lancedb  # noqa: F401  its first import takes seconds; time the ingest alone
    started = time.monotonic()
    first = kb.ingest(folder)
    first_s = time.monotonic() - started
    assert (first["added"], first["updated"], first["removed"], first["unchanged"]) == (8, 0, 0, 0)
    assert first["files"] == 8 and first["chunks"] >= 8 and first["skipped"] == []
    started = time.monotonic()
    second = kb.ingest(folder)
    second_s = time.monotonic() - started
    assert (second["added"], second["updated"], second["removed"], second["unchanged"]) == (0, 0, 0, 8)
    assert second["chunks"] == first["chunks"]

    _write(folder, "geology/volcano.md", [*DOCS["geology/volcano.md"],
                                          ("A seismograph station on the east flank records about forty small "
                                          "earthquakes every month.")])
    (folder / "clubs" / "chess.html").unlink()
    _write(folder, "geology/glaciers.txt", [("The Brenner glacier retreats by about thirty metres a year, leaving "
                                            "a field of grey moraine and small meltwater ponds.")])
    third = kb.ingest(folder)
    assert (third["added"], third["updated"], third["removed"], third["unchanged"]) == (1, 1, 1, 6)
    assert third["files"] == 8
    print(f"\ningest: 8 files, {first['chunks']} chunks, first {first_s:.2f}s, unchanged {second_s:.2f}s, "
          f"after 3 changes {third['seconds']:.2f}s")

    assert kb.search("How fast is the glacier shrinking?", 1)[0].file == "geology/glaciers.txt"
    assert kb.search("How many earthquakes are recorded each month?", 1)[0].file == "geology/volcano.md"
    assert all(p.file != "clubs/chess.html" for p in kb.search("Who founded the Riverside Chess Club?", 10))
    assert kb.manifest()["files"].keys() == {"geology/glaciers.txt", *DOCS} - {"clubs/chess.html"}
    # the index is on disk: a new KnowledgeBase object (a restarted server) reads the same vectors
    assert KnowledgeBase(service, "incremental").search("Who discovered Comet Halden?", 1)[0].file == "space/comet.html"
    rechunked = kb.ingest(folder, chunk_tokens=48)  # other chunking: the old vectors are dropped, all re-embedded
    assert rechunked["rebuilt"] is True and rechunked["added"] == 8 and rechunked["chunks"] > third["chunks"]


@pytest.mark.slow
def test_retrieval_recall_at_k(service: Service, tmp_path: Path) -> None:
    kb = KnowledgeBase(service, "recall")
    stats = kb.ingest(_library(tmp_path), chunk_tokens=48, overlap_tokens=12)  # two or three passages a file
    assert stats["chunks"] >= 2 * len(DOCS)
    report = score(kb, [Question(q, file, word) for q, file, word in QUESTIONS], (1, 3))
    recall = {k: report.recall(k) for k in (1, 3)}
    top = [kb.search(q, 1)[0] for q, _, _ in QUESTIONS]
    passage_hits = sum(q.passage_rank == 1 for q in report.questions)
    print(f"\n{stats['chunks']} passages from {len(DOCS)} files: recall@1 = {recall[1]:.3f}, "
          f"recall@3 = {recall[3]:.3f}, right passage first {passage_hits}/{len(QUESTIONS)}")
    assert recall[1] >= 0.85 and recall[3] >= 0.95 and passage_hits >= 0.8 * len(QUESTIONS)
    passages = kb.search(QUESTIONS[0][0], 4)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert passages[0].file == "geology/volcano.md" and "1887" in passages[0].text
    best_unrelated = max(kb.search(q, 1)[0].score for q in UNRELATED)
    worst_related = min(p.score for p in top)
    print(f"best unrelated score {best_unrelated:.3f}, worst related top score {worst_related:.3f}")
    assert best_unrelated < knowledge.THRESHOLD < worst_related


# -- the recipes on the embedding and chat models --------------------------------------------------
def _run(runner: PipelineRunner, recipe: str, inputs: dict[str, object]) -> dict[str, object]:
    job = runner.wait(runner.submit(_recipe(recipe), inputs), timeout=300)
    assert job.status == "succeeded", job.error
    return job.outputs or {}


@pytest.mark.slow
def test_knowledge_qa_cites_the_right_file_or_says_it_does_not_know(service: Service, tmp_path: Path) -> None:
    folder = _library(tmp_path)
    store = PipelineStore(tmp_path / "jobs.db")
    runner = PipelineRunner(service, store, ArtifactStore(tmp_path / "artifacts", store))
    try:
        known = _run(runner, "knowledge-qa", {"folder": str(folder), "question": "When was the railway electrified?"})
        unknown = _run(runner, "knowledge-qa", {"folder": str(folder), "question": UNRELATED[0]})
    finally:
        runner.close()
        store.close()
    assert known["known"] is True and known["answer"].strip()
    assert known["citations"][0]["file"] == "travel/railway.md"
    print(f"\nanswer: {known['answer']!r} citations: {known['citations']}")
    assert known["citations"][0]["passage"] >= 1 and known["citations"][0]["score"] > knowledge.THRESHOLD
    assert "1931" in known["answer"]
    assert known["index"]["added"] == 8
    assert unknown["known"] is False and unknown["answer"] == DONT_KNOW and unknown["citations"] == []
    assert unknown["index"]["unchanged"] == 8  # the second run reused the index


@pytest.mark.slow
def test_customer_service_remembers_the_session_and_hands_off(service: Service, tmp_path: Path) -> None:
    folder = tmp_path / "faq"
    for rel, paragraphs in FAQ.items():
        _write(folder, rel, paragraphs)
    store = PipelineStore(tmp_path / "jobs.db")
    runner = PipelineRunner(service, store, ArtifactStore(tmp_path / "artifacts", store))

    def say(message: str, session: str = "alice-1") -> dict[str, object]:
        return _run(runner, "customer-service", {"folder": str(folder), "message": message, "session": session})

    try:
        first = say("Hi, my name is Alice. How do I reset my password?")
        second = say("What is my name?")
        third = say("Can you repair the gearbox of my tractor?")
        stranger = say("What is my name?", session="bob-1")
    finally:
        runner.close()
        store.close()
    print(f"\nreplies: {[r['reply'] for r in (first, second, third, stranger)]}")
    assert first["handoff"] is False and first["citations"][0]["file"] == "account.md"
    assert "settings" in first["reply"].lower()
    assert second["handoff"] is False and "alice" in second["reply"].lower() and second["turn"] == 2
    assert third["handoff"] is True and third["reply"] == HANDOFF and third["citations"] == []
    assert stranger["handoff"] is True and stranger["turn"] == 1  # another session knows nothing of Alice
