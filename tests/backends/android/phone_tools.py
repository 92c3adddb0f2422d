"""Stand-ins for the phone's getprop, cmd and dumpsys (installed under each name on the loopback phone's PATH).

State lives in the phone's root ($FBNET_PHONE_ROOT): props.json (read-only) and power.json (fixed performance mode).
"""

import json
import os
import sys

ROOT = os.environ["FBNET_PHONE_ROOT"]
POWER = os.path.join(ROOT, "power.json")


def _power() -> dict:
    try:
        with open(POWER) as f:
            return json.load(f)
    except OSError:
        return {"fixed_performance_mode": False, "history": []}


def getprop(args):
    with open(os.path.join(ROOT, "props.json")) as f:
        props = json.load(f)
    if args:
        print(props.get(args[0], ""))
    else:
        for k in sorted(props):
            print(f"[{k}]: [{props[k]}]")
    return 0


def cmd(args):
    if args[:2] == ["power", "set-fixed-performance-mode-enabled"] and len(args) == 3:
        state = _power()
        state["fixed_performance_mode"] = args[2] in ("true", "1")
        state["history"].append(args[2])
        with open(POWER, "w") as f:
            json.dump(state, f)
        return 0
    print(f"cmd: unknown command: {' '.join(args)}", file=sys.stderr)
    return 255


def dumpsys(args):
    if args[:1] == ["power"]:
        print("POWER MANAGER (dumpsys power)\n\nPower Manager State:")
        print(f"  mFixedPerformanceModeEnabled={str(_power()['fixed_performance_mode']).lower()}")
        return 0
    print(f"Can't find service: {' '.join(args)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    tool = os.path.basename(sys.argv[0])
    sys.exit({"getprop": getprop, "cmd": cmd, "dumpsys": dumpsys}[tool](sys.argv[1:]))
