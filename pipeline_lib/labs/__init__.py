"""Labs a check can grade: exercise notebooks, their release and their grader."""
