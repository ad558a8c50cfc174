# Only ServiceMaker lines here: twistd imports this file to list its commands,
# and a plugin file that fails to import makes the command vanish silently.
from twisted.application.service import ServiceMaker

jeissonAggregator = ServiceMaker(
    "jeisson aggregator",
    "jeisson.aggregator.tap",
    "jeisson aggregator: registers homes and negotiates power budgets under DR events",
    "jeisson-aggregator",
)
jeissonHome = ServiceMaker(
    "jeisson home",
    "jeisson.home.tap",
    "jeisson home: connects to the aggregator and commands its actuators' relays",
    "jeisson-home",
)
jeissonActuator = ServiceMaker(
    "jeisson actuator",
    "jeisson.actuator.tap",
    "jeisson software actuator: relays and a power meter, as a board would have",
    "jeisson-actuator",
)
jeissonRadio = ServiceMaker(
    "jeisson radio",
    "jeisson.transports.radio_simulator",
    "a simulated XBee network on pseudo-terminals, for labs and tests without radios",
    "jeisson-radio",
)
