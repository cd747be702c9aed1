"""Tests of answers from your own documents, with citeqa's pytest plugin.

Enable the plugin in your conftest.py and say which documents to answer from:

    # conftest.py
    pytest_plugins = ["evals.pytest_plugin"]

    pytest --citeqa-corpus path/to/your/folder     # ingested once, then incrementally
    pytest --citeqa-collection NAME                # or a collection you ingested before

These three tests run against tests/data/r-vignettes of the citeqa repository (its flow test,
tests/test_eval_flow.py, runs them so).
"""


def test_the_routine_that_handles_ties(assert_answer):
    assert_answer(
        "Which routine does the survival package use to deal with tied times?",
        contains="aeqSurv",
        cites="survival-tiedtimes.pdf",  # the file, relative to the folder (or its title)
    )


def test_the_version_that_fixed_it(assert_answer):
    answer = assert_answer(
        "In which survival version was the roundoff issue addressed for coxph and survfit?",
        contains="2.40",
    )
    assert answer.citations[0].page in (1, 2)  # the answer is returned for more checks


def test_a_question_the_documents_do_not_answer(assert_answer):
    assert_answer("What is the boiling point of mercury in Kelvin?", refused=True)
