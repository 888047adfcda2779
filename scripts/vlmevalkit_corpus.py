"""Awkward model answers for the VLMEvalKit scoring parity (scripts/parity_vlmevalkit.py): fixed strings (letters in
every wrapping, answer phrases, VLMEvalKit's glued prefixes, refusals, long text, other letters, lower case) and
strings built from a sample's own options (the option text alone, in a sentence, lower-cased, two options)."""
from __future__ import annotations

FIXED = [
    "A", "B", "C", "D", "E", "F", "Z", "a", "b", "", " ", "\n", "A.", "(B)", "B)", "C) x", "D. y", "[C]", "{D}",
    "**B**", "*A*", "#C", "B;", "A!", "C:", ")", ")A", "A)B", "(A) (B)", "A B", "A, B", "B or C", "Answer: D",
    "Option: C", "The answer is B.", "The answer is\nC", "The best answer is: D", "The correct answer is **B**.",
    "The correct answer is d", "answer is C", "Correct answer is A", "Best option: (A)", "Best option:(C)",
    "Best answer: B", "The best option is (D)", "The correct option is C", "The best option isThe correct option is B",
    "Best answer:Best option: D", "I think the answer is B, not A", "The answer is B. A is wrong",
    "A person is walking; the correct option is C", "Based on the video, the man is walking his dog in the park today",
    "Based on the video the best choice is C", "It is hard to tell what happens in this clip from the frames given here",
    "Cannot determine the answer", "Sorry, I can't help with images of people yet.", "I can't process this file.",
    "Failed to obtain answer via API.", "Z. none", "None of the above", "Neither A nor B", "1", "2.", "Option 3",
    "B\n\nExplanation: the woman leaves first.", "Explanation first. Then: A", "(E)", "E. none", "ABCD", "Ｂ",
    "The answer: C", "the answer is b", "Answer:B", "Option:A", "Answer - C", "D is correct", "I choose (C).",
]


def answers_for(sample) -> list[str]:
    """FIXED plus answers made of this sample's options (and the gold letter with its text)."""
    opts = [str(o) for o in sample.options]
    gold = sample.answer_letter or "A"
    gold_text = opts[sample.answer] if sample.answer is not None else opts[0]
    built = [opts[0], opts[-1], gold_text, gold_text.lower(), gold_text.upper(), gold_text + ".",
             f"The answer is {gold_text}", f"{gold}. {gold_text}", f"({gold}) {gold_text}",
             f"{opts[0]} and {opts[1]}", f"I think it is {opts[1]}, because the video shows it clearly at the end",
             gold_text * 3]
    return FIXED + built
