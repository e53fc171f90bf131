"""What a person sees of a prediction: coloured masks, overlays and legends (:mod:`.render`), and the web demo's core
without any UI library (:mod:`.segmenter`)."""
