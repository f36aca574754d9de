import time
def test_build(tiny_models):
    t=time.time()
    for f in ("xlm-roberta","roberta","bert"):
        tiny_models.checkpoint(f)
    print("ckpts", time.time()-t)
    for f in ("xlm-roberta","roberta","bert"):
        t=time.time(); tiny_models.module(f); print(f, "convert", time.time()-t)
        t=time.time(); tiny_models.loaded(f); print(f, "load", time.time()-t)
    import os; print(os.listdir(tiny_models.checkpoint("bert")))
