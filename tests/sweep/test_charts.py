"""``fmnist.sweep.charts.pareto_scatter``: the front's labels stay inside the picture."""

import numpy as np

from fmnist.sweep.charts import WHITE, pareto_scatter


def test_a_label_at_the_right_edge_is_written_left_of_its_dot() -> None:
    points = [(1.0, 0.80), (2.0, 0.90), (12.0, 0.94)]
    picture = pareto_scatter(points, [0, 1, 2], ["1min", "2min", "a long label"], ("minutes", "accuracy"))
    frame_right = picture.shape[1] - 20  # the plot's right margin: nothing is drawn beyond its edge
    margin = picture[:, frame_right + 1 :]
    assert (margin == np.array(WHITE, dtype=np.uint8)).all(), "a label ran past the frame"
    top_right = picture[:60, frame_right - 150 : frame_right - 10]
    assert (top_right != np.array(WHITE, dtype=np.uint8)).any(axis=-1).sum() > 30, "the label was written"
