"""The L0 muon trigger domain: one RPC barrel sector (:mod:`.detector`), its event simulator
(:mod:`.simulate`), the standard coincidence-window trigger (:mod:`.baseline`), the analytic
two-track vertex fit (:mod:`.vertexfit`), event displays (:mod:`.plots`), and the ``simulate``
source / ``hits`` format it registers for the training core (:mod:`.data`)."""
