"""A user's caproto IOC: a shutter whose putter records every command it ran."""

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty


class Shutter(PVGroup):
    """OPEN is the command; STATE follows it through the putter; COUNT counts the commands."""

    def __init__(self, *args, label: str = "shutter", **kwargs):
        super().__init__(*args, **kwargs)
        self.label = label

    OPEN = pvproperty(value=0, dtype=int, doc="1 opens, 0 closes")
    STATE = pvproperty(value="closed", dtype=ChannelType.STRING, read_only=True)
    COUNT = pvproperty(value=0, dtype=int, read_only=True)

    @OPEN.putter
    async def OPEN(self, instance, value):
        await self.STATE.write(f"{self.label} {'open' if value else 'closed'}")
        await self.COUNT.write(self.COUNT.value + 1)
        return value
