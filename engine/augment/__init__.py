"""Where a round's new examples come from: teacher requests, EDA edits, real rows, an unlabeled pool."""
