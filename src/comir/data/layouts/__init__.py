"""The paper's Zenodo records after unpacking: recognise their layout.

:func:`.detect.detect_layout` walks an unpacked record and says what it holds: its kind,
its aligned pairs per split, its Zurich images and its prebuilt transformed test
sets (what :mod:`comir.data.convert` and :mod:`comir.testset.prebuilt` then read).

Recognised layouts (folder names are matched case-insensitively, anywhere below
the unpacked root; hidden files and ``__MACOSX`` are ignored):

``bfshg-comir`` (Zenodo 3874362, the CoMIR paper's BF/SHG patches)
    ``<any>/TrainSet|Validation1Set|Validation2Set|TestSet/<id>_{SHG,BF}.tif``.
    Folder names map to splits: ``train*`` -> train, ``validation1*`` /
    ``val*`` / ``valid*`` -> val, ``validation2*`` / ``val2*`` / ``tun*`` ->
    tuning, ``test*`` -> test.  Transformed test patches are recognised as
    ``R_<id>_<MOD>.tif`` / ``T_<id>_<MOD>.tif`` (the authors' MATLAB naming) or
    ``<id>_<MOD>_{R,T}.tif``, with a metadata CSV (``;`` or ``,``) holding
    ``Filename, X1_Ref .. Y4_Ref, X1_Trans .. Y4_Trans[, Displacement]``.
``bfshg-multiregeval`` (Zenodo 4550300, full-size cores)
    ``HighRes_Splits/WSI/{train,test}/<id>_{SHG|MI,BF|WB}.tif``; other pair
    folders next to ``WSI`` (``CNN_Training_Crops``, ...) are ignored;
    ``Registration_UltimateTesting/<exp>_Patches/<id>_<MOD>_{R,T}.tif`` are
    listed as prebuilt test sets.
``zurich`` (Zenodo 5914759)
    ``images_tif/zh<N>.tif``: 4 channels, 12-bit values in uint16
    (``groundtruth/`` is not used).
``multiregeval-eval`` (Zenodo 5557568, evaluation patches of Lu et al. 2021)
    ``Eliceiri_patches/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.tif`` (A = SHG,
    B = BF) and ``Zurich_patches/fold<f>/patch_tlevel<k>/{A,B}/test/<id>_{R,T}.png``
    (A = NIR, B = colour in B, G, R order), each level with ``info_test.csv``.

Anything else stops with an :class:`~comir.io.InputError` that shows a compact
summary of the tree that was found and the layouts that were expected.

Modules, one concern each, each importing only those above it in this list:

* :mod:`.tree`: the files below the root and what their names and folders say they are;
* :mod:`.result`: :class:`.result.Layout`, its pairs and prebuilt test sets, the shared constants;
* :mod:`.metadata`: a prebuilt test set's metadata CSV (:func:`.metadata.read_corner_metadata`);
* :mod:`.detect`: :func:`.detect.detect_layout`, from the classified files to the layout.

The modules are imported by their own names (``from comir.data.layouts.detect import
detect_layout``): this package imports nothing.
"""
