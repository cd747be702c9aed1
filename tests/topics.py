"""A small collection of six plain topics (kettles, bicycles, ...): enough documents for an
answerability fit (evals.calibrate.MIN_DOCUMENTS), small enough to fit in seconds."""

from __future__ import annotations

from pathlib import Path


def write_topic_documents(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    topics = {
        "kettles": "Electric kettles boil water quickly. A kettle has a heating element. "
        "The thermostat switch stops boiling. Descaling removes mineral deposits.",
        "bicycles": "Road bicycles use narrow tyres. A derailleur moves the chain between "
        "sprockets. Disc brakes stop reliably in rain. Frames weigh 8 kilograms.",
        "gardens": "Raised garden beds drain well. Compost improves heavy clay soils. "
        "Tomato seedlings need warm nights. Mulch keeps moisture in summer.",
        "bread": "Sourdough bread rises with wild yeast. A starter culture needs daily "
        "feeding. Steam gives a crisp crust. Proofing baskets shape round loaves.",
        "clocks": "Pendulum clocks keep time with gravity. An escapement releases the gear "
        "train. Quartz watches drift 15 seconds monthly. Winding springs store energy.",
        "lamps": "Desk lamps use warm white bulbs. Dimmer switches lower brightness. "
        "Articulated arms hold the shade steady. Heavy bases prevent tipping over.",
    }
    for name, text in topics.items():
        (folder / f"{name}.md").write_text(f"# {name.title()} Notes\n\n{text}\n")
    return folder
