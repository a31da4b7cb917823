#!/bin/sh
# A hostile build that leaves a directory where boxbuild writes its provenance file. Usage: build TARGET.
mkdir "$1/boxbuild-provenance.json"
