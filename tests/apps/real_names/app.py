"""Endpoint names runpod-flash 1.21.0 accepts and that are safe as file names: all accepted."""

from runpod_flash import Endpoint


@Endpoint(name='my worker', cpu='cpu3c-1-2')
def f0(x):
    return x

@Endpoint(name='héllo-wörld', cpu='cpu3c-1-2')
def f1(x):
    return x

@Endpoint(name='😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀', cpu='cpu3c-1-2')
def f2(x):
    return x

@Endpoint(name='nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn', cpu='cpu3c-1-2')
def f3(x):
    return x

@Endpoint(name='a.b', cpu='cpu3c-1-2')
def f4(x):
    return x

@Endpoint(name='a:b=c,d', cpu='cpu3c-1-2')
def f5(x):
    return x

@Endpoint(name=' padded ', cpu='cpu3c-1-2')
def f6(x):
    return x

@Endpoint(name='x#y', cpu='cpu3c-1-2')
def f7(x):
    return x
