from monai_ilm.cli import main

main()
