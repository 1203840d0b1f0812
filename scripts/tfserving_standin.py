"""``python -m scripts.tfserving_standin --port 8500 --rest_api_port 8501 --model_config_file F``:
the TF Serving stand-in (`harness.tfserving_standin`)."""
from harness.tfserving_standin import main

if __name__ == "__main__":
    raise SystemExit(main())
