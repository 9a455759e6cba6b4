"""The timers' order of turns: no step keeps one place or one predecessor."""

from __future__ import annotations

import itertools

import pytest

from benchmarks.common import Loss, Method, round_order, time_calls, time_methods


@pytest.mark.parametrize("count", [2, 3, 5])
def test_every_step_comes_first_and_follows_each_neighbour(count):
    steps = list(range(count))
    rounds = [round_order(steps, index) for index in range(2 * count)]
    assert all(sorted(order) == steps for order in rounds)
    assert {order[0] for order in rounds} == set(steps)
    # The sequence the steps actually run in, across rounds.
    run = list(itertools.chain.from_iterable(rounds))
    predecessors = {step: set() for step in steps}
    for before, after in itertools.pairwise(run):
        predecessors[after].add(before)
    for step in steps:
        neighbours = {(step - 1) % count, (step + 1) % count}
        assert neighbours <= predecessors[step], (step, predecessors[step])


def test_both_timers_run_the_steps_in_that_order():
    calls = []

    def step(name):
        return lambda: calls.append(name)

    names = ["a", "b", "c"]
    time_calls(
        {name: step(name) for name in names}, lambda _: None, calls=1, repeats=4, max_pair_s=1e9
    )
    # One call of each to size the batches, then per round an untimed and a timed call.
    expected = list(itertools.chain.from_iterable(round_order(names, r) for r in range(4)))
    assert calls[3:] == [name for name in expected for _ in range(2)]

    calls.clear()
    methods = [Method(Loss(name, "lsr", None, "eager"), step(name)) for name in names]
    time_methods(methods, lambda _: None, repeats=4, min_repeat_s=0.0, max_total_s=1e9)
    # Three calls of each before the rounds (the first call, an untimed one, one timed
    # to size the batches), then per round an untimed and a timed call.
    assert calls[9:] == [name for name in expected for _ in range(2)]
