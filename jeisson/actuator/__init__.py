"""The software actuator: a relay board (Arduino/Photon) in software.

It speaks the board side of the home <-> actuator protocol
(``jeisson.wire.home_actuator``) exactly as the firmware does: relays with a
minimum switching interval, a noisy power meter, and a failsafe that puts the
relays in their safe state when the home falls silent.
"""
