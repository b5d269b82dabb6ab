"""Hand-made cases whose scores under FakeMemory are worked out in the comments of test_eval_protocols.py."""

from __future__ import annotations

from recall.datasets.cases import EvalCase

BASE_ANSWERS = {
    "Who wrote Hamlet?": "William Shakespeare",
    "How tall is Everest?": "8849 metres",
    "Who painted Guernica?": "Pablo Picasso",
    "What is the capital of France?": "Paris",
    "Who leads Acme Corp?": "John Roe",
    "Which river flows through Zed?": "Red River",
    "Who founded Quux Labs?": "Bob Stone",
    "What is the capital of Freedonia?": "Oldtown",
}

# A perfect memory gets these fully right: each rephrase shares most words with its prompt (overlap
# >= 0.5), and no locality or portability prompt is close to another case's prompt.
SIMPLE_CASES = [
    EvalCase(
        case_id="a",
        prompt="Who leads Acme Corp?",
        target="Jane Doe",
        ground_truth="John Roe",
        rephrases=("Who leads Acme Corp now?",),
        locality=(("Who wrote Hamlet?", "William Shakespeare"),),
        portability=(("Who leads Acme Corp today?", "Jane Doe"),),
    ),
    EvalCase(
        case_id="b",
        prompt="Which river flows through Zed?",
        target="Blue River",
        ground_truth="Red River",
        rephrases=("Which river flows through Zed town?",),
        locality=(("How tall is Everest?", "8849 metres"),),
    ),
    EvalCase(
        case_id="c",
        prompt="Who founded Quux Labs?",
        target="Ada Smith",
        ground_truth="Bob Stone",
        rephrases=("Who founded Quux Labs originally?",),
        locality=(("Who painted Guernica?", "Pablo Picasso"),),
    ),
]

# SIMPLE_CASES plus two traps:
# - "d": its locality prompt "What is the capital of France?" overlaps its own prompt 5/7, so the sentinel
#   admits the edit there (a false accept) and the answer flips from Paris to Fredville.
# - "e": its rephrase shares no word with any prompt: never admitted, and top-1 only by tie order.
TRICKY_CASES = [
    *SIMPLE_CASES,
    EvalCase(
        case_id="d",
        prompt="What is the capital of Freedonia?",
        target="Fredville",
        ground_truth="Oldtown",
        rephrases=("What is the capital of Freedonia now?",),
        locality=(("What is the capital of France?", "Paris"),),
        portability=(("Which colour is the flag there?", "green"),),
    ),
    EvalCase(
        case_id="e",
        prompt="Who composed Zorblax?",
        target="Mia Wong",
        ground_truth="Tom Hill",
        rephrases=("Name the person behind that tune",),
        locality=(("How old is Rome?", "2776 years"),),
    ),
]
