"""Your own data (``--dataset folder --data_path D``): the names of ``D/labels.txt`` (or those ``--classes``
picks), the same training and evaluation as ADE20K, and open-vocabulary evaluation of a network trained elsewhere.
"""
import sys
from typing import List, Optional, Tuple

from encoding_custom.datasets.classes import ALL_CLASSES, SYNTHETIC_CLASSES, select_classes
from encoding_custom.datasets.folder import folder_labels, folder_layout
from encoding_custom.datasets.layout import SegmentationLayout
from encoding_custom.tasks.base import OptionError
from encoding_custom.tasks.networks import build_network, load_network
from encoding_custom.tasks.segmentation import SegmentationTask


class FolderTask(SegmentationTask):
    """A plain folder set (``encoding_custom.datasets.folder``): ``labels.txt`` gives the labels, ``--ignore_index``
    the ignored mask value (255), ``--reduce_zero_label`` makes 0 unlabelled.

    test.py evaluates any network on the set's own names: when some were not among its training labels, the report
    splits the mIoU into the classes it was trained with (seen) and the others (unseen).
    """

    def layout(self) -> SegmentationLayout:
        args = self.args
        return folder_layout(args.data_path, ignore_value=args.ignore_index, reduce_zero_label=args.reduce_zero_label,
                             labels=self.names())

    def names(self) -> List[str]:
        """Returns: the set's class names (``labels.txt``), read once."""
        if not hasattr(self, "_names"):
            self._names = folder_labels(self.args.data_path)
        return self._names

    def label_set(self) -> Tuple[List[str], Optional[List[int]]]:
        self.layout()  # a bad --ignore_index stops before the network is built
        # The tiny preset's 'synthetic' (the classes of a synthetic set) is all of a folder set's labels.txt.
        spec = ALL_CLASSES if self.args.classes == SYNTHETIC_CLASSES else self.args.classes
        try:
            return select_classes(spec, self.names(), "%s (labels.txt)" % self.args.data_path)
        except ValueError as err:
            raise OptionError(str(err)) from err

    def evaluation_network(self):
        labels, indices = self.label_set()
        if self.args.weights is None:
            print("test.py: warning: no --weights, evaluating a randomly initialised network", file=sys.stderr)
            return build_network(self.args, labels), labels, indices, None
        net, trained, _ = load_network(self.args)
        if trained != labels:
            net.set_labels(labels)  # LSeg's labels are text: the set's own names, whatever it was trained with
        unseen = set(labels) - set(trained)
        return net, labels, indices, trained if unseen else None
