"""Builds as pictures: the slots a timeline draws jobs in, and `rlmake report`'s HTML page."""
