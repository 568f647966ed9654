"""The offline domain: toy generators of calorimeter jet images (:mod:`.jets`, with
:mod:`.jetprep`), monojet events (:mod:`.monojet`), low-pT electron tracks (:mod:`.electrons`),
table files (:mod:`.tabular`), pseudo-experiment histograms (:mod:`.histograms`), and the
sources / formats / augmentation it registers for the training core (:mod:`.data`)."""
