"""The transports every jeisson link runs over, in one place.

A link's session (its state machine) never sees a transport: it talks to a
``jeisson.link.Wire``.  These modules are the wires:

``stream``
    ``LineLink``: a byte stream (TCP, TLS, a serial line to an XBee in
    transparent mode) framed into lines.
``serial``
    ``SerialPortService``: a serial device kept open, retried while absent;
    ``SerialPortConfig`` and ``read_serial_port``: a port's config, the same
    for the home and a board.
``xbee_coordinator``
    The home's coordinator XBee in API mode: one ``RadioLink`` wire per
    remote radio.
``xbee_end_device``
    A board's own XBee in API mode.
``radio_simulator``
    A simulated XBee network on pseudo-terminals (``twistd jeisson-radio``),
    for labs and tests without radios.
``boards``
    Which wire serves a serial port on each side (``home_serial_service``,
    ``board_serial_service``), and each side's serial config around the
    shared port config.
"""
