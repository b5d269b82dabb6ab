"""Benchmark records -> EvalCase: readers for ZsRE, CounterFact, KnowEdit, MQuAKE and their loading."""
