"""The upload lifecycle's pure parts: part planning, part numbers, verification verdicts."""

import pytest

from service.recordings.uploads import plan_parts

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [5 * MiB + 1, 100 * MiB, 5 * 1024**3, 5 * 1024**4, 48_828 * MiB + 7])
def test_part_plan_respects_s3_limits(size):
    plan = plan_parts(size, 16 * MiB)
    assert plan.part_size >= 5 * MiB
    assert plan.part_size % MiB == 0
    assert plan.part_count <= 10_000
    assert (plan.part_count - 1) * plan.part_size < size <= plan.part_count * plan.part_size
