"""A second module on the same session fleet: it is not started again."""


def test_second_module_same_fleet(beamline, record):
    assert beamline.get("CS:DET:NAME") == "pilatus"
    record(beamline)
