"""The two jeisson wire formats, as pure parse/serialize functions.

``aggregator_home``: JSON-bodied lines between the aggregator and a home.
``home_actuator``: short ASCII lines between a home and its relay boards.
"""
