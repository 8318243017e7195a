"""The registrar's desk: the review queue of what kinpath did not auto-code, a web application to
decide it (``kinpath review serve``), and the export of the decisions as a training table
(``kinpath review export``)."""
