"""Where models are built: timm backbones with a new head, pretrained or local weights, the LightningModule."""
