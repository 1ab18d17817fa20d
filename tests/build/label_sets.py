"""Expected label maps (model label -> garment class) of the known label sets, written by hand for the tests."""

# Each label set the name rules must get right, in its model's label order, with the class every label must get.
# LIP: Gong et al., "Look into Person", CVPR 2017 (20 labels, as SCHP's simple_extractor.py lists them).
LIP = {
    "Background": "background", "Hat": "hat", "Hair": "hair", "Glove": "accessories", "Sunglasses": "accessories",
    "Upper-clothes": "upper", "Dress": "dress", "Coat": "upper", "Socks": "shoes", "Pants": "lower",
    "Jumpsuits": "dress", "Scarf": "accessories", "Skirt": "lower", "Face": "face", "Left-arm": "skin",
    "Right-arm": "skin", "Left-leg": "skin", "Right-leg": "skin", "Left-shoe": "shoes", "Right-shoe": "shoes",
}  # fmt: skip
# CIHP: Gong et al., "Instance-level Human Parsing via Part Grouping Network", ECCV 2018: LIP's 20 categories,
# spelled as mmsegmentation's CIHPDataset spells them ("UpperClothes").
CIHP = {
    "Background": "background", "Hat": "hat", "Hair": "hair", "Glove": "accessories", "Sunglasses": "accessories",
    "UpperClothes": "upper", "Dress": "dress", "Coat": "upper", "Socks": "shoes", "Pants": "lower",
    "Jumpsuits": "dress", "Scarf": "accessories", "Skirt": "lower", "Face": "face", "Left-arm": "skin",
    "Right-arm": "skin", "Left-leg": "skin", "Right-leg": "skin", "Left-shoe": "shoes", "Right-shoe": "shoes",
}  # fmt: skip
# ATR: Liang et al., "Deep Human Parsing with Active Template Regression", TPAMI 2015 (18 labels, as the dataset
# names them).
ATR = {
    "background": "background", "hat": "hat", "hair": "hair", "sunglass": "accessories", "upper-clothes": "upper",
    "skirt": "lower", "pants": "lower", "dress": "dress", "belt": "accessories", "left-shoe": "shoes",
    "right-shoe": "shoes", "face": "face", "left-leg": "skin", "right-leg": "skin", "left-arm": "skin",
    "right-arm": "skin", "bag": "accessories", "scarf": "accessories",
}  # fmt: skip
# Pascal-Person-Part: Chen et al., "Detect What You Can", CVPR 2014, its parts grouped into 7 labels (as SCHP's
# simple_extractor.py lists them). Body parts, not garments: the torso is taken as clothing (it is clothed in nearly
# every re-ID image), the limbs as skin (often bare: repainting them would change the person).
PASCAL_PERSON_PART = {
    "Background": "background", "Head": "face", "Torso": "upper", "Upper Arms": "skin", "Lower Arms": "skin",
    "Upper Legs": "skin", "Lower Legs": "skin",
}  # fmt: skip
# mattmdjaga/segformer_b2_clothes (the default --parser-model), its model card's id2label: ATR's 18, capitalised.
SEGFORMER_B2_CLOTHES = {
    "Background": "background", "Hat": "hat", "Hair": "hair", "Sunglasses": "accessories", "Upper-clothes": "upper",
    "Skirt": "lower", "Pants": "lower", "Dress": "dress", "Belt": "accessories", "Left-shoe": "shoes",
    "Right-shoe": "shoes", "Face": "face", "Left-leg": "skin", "Right-leg": "skin", "Left-arm": "skin",
    "Right-arm": "skin", "Bag": "accessories", "Scarf": "accessories",
}  # fmt: skip
# The demo's shipped masks (dlcr_data.demo.labels), read by the oracle parser.
DEMO_LABEL_MAP = {
    "background": "background", "hair": "hair", "face": "face", "upper_clothes": "upper", "lower_clothes": "lower",
    "shoes": "shoes", "arms": "skin", "legs": "skin",
}  # fmt: skip
LABEL_SETS = {"LIP": LIP, "CIHP": CIHP, "ATR": ATR, "Pascal-Person-Part": PASCAL_PERSON_PART}
LABEL_SETS |= {"segformer_b2_clothes": SEGFORMER_B2_CLOTHES}
