#!/usr/bin/env node
import "../dist-bin/bkt.js";
