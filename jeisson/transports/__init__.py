"""The transports every jeisson link runs over, in one place.

A link's session (its state machine) never sees a transport: it talks to a
``jeisson.link.Wire``.  These modules are the wires:

``stream``
    ``LineLink``: a byte stream (TCP, TLS, a serial line to an XBee in
    transparent mode) framed into lines.
``serial``
    ``SerialPortService``: a serial device kept open, retried while absent.
``xbee_coordinator``
    The home's coordinator XBee in API mode: one ``RadioLink`` wire per
    remote radio.
``xbee_end_device``
    A board's own XBee in API mode.
``radio_simulator``
    A simulated XBee network on pseudo-terminals (``twistd jeisson-radio``),
    for labs and tests without radios.
``boards``
    Which wire serves which board link: the serial config shape shared by
    the home and the actuator, and the protocol built for each mode.
"""
