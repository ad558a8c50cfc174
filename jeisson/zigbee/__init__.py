"""Boards over ZigBee: XBee radios on a serial port.

``port``: keeps a serial device open (retries while it is absent).
``coordinator``: the home's coordinator XBee in API mode, one board link per
remote radio.  Transparent (AT) mode needs neither: the serial line carries
the board protocol's lines as they are, through ``jeisson.link.LineLink``.
"""
