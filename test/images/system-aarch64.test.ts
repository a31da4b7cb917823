import { describeSystemBox } from '../helpers/system-box.js';

/* The aarch64 debian-system box: its second debootstrap stage runs in an emulated aarch64 VM, many minutes under TCG. */
describeSystemBox('aarch64');
