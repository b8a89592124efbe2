"""A class on one cluster: a roster in, each student a login and names of their own,
the teacher's live feed shared, and a board of who is where.

:mod:`roster` reads the roster and names a student's topics, groups, dataset and
bucket; :mod:`rights` says what each may do on Kafka; :mod:`enrol` makes, rotates and
removes students (:mod:`record` keeps their passwords, :mod:`handout` writes their
``.env``); :mod:`board` reads what each has done; :mod:`isolation` shows what each
may not do.
"""
