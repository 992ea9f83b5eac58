#!/bin/sh
echo "hello, $(cat /greeting.txt)"
